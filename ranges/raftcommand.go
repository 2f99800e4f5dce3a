package ranges

import (
	"errors"

	"google.golang.org/protobuf/proto"

	"github.com/rangestore/rangestore/proto/rspb"
)

// decodeRaftCommand decodes a Raft log entry's payload; it is the only
// decoder of the apply path. A command without a case in the oneof is a
// write in the layout used before the oneof (its body in the deprecated
// top-level fields requests=3, write_batch=6, result=7; an entry with none of
// them applied as an empty write): it comes back as the same write in a
// WriteCommand, so old log entries apply as they did. New commands never set
// the old fields, and one that sets both them and a case is malformed.
func decodeRaftCommand(data []byte) (*rspb.RaftCommand, error) {
	cmd := &rspb.RaftCommand{}
	if err := proto.Unmarshal(data, cmd); err != nil {
		return nil, err
	}
	legacy := len(cmd.LegacyRequests) > 0 || len(cmd.LegacyWriteBatch) > 0 || cmd.LegacyResult != nil //nolint:staticcheck // the deprecated fields are read here only
	if cmd.Command != nil {
		if legacy {
			return nil, errors.New("both a command and the pre-oneof write fields (requests, write_batch, result) are set")
		}
		return cmd, nil
	}
	cmd.Command = &rspb.RaftCommand_Write{Write: &rspb.WriteCommand{
		Requests: cmd.LegacyRequests, WriteBatch: cmd.LegacyWriteBatch, Result: cmd.LegacyResult, //nolint:staticcheck // see above
	}}
	cmd.LegacyRequests, cmd.LegacyWriteBatch, cmd.LegacyResult = nil, nil, nil //nolint:staticcheck // see above
	return cmd, nil
}
