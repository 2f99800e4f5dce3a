package txncheck

import (
	"errors"
	"fmt"
	"sort"
)

// Bank describes a bank workload: transfers between accounts keep the
// total constant. Account values are unique strings (as every value in a
// history) that encode a balance; Balance decodes one. An absent account
// holds 0.
type Bank struct {
	Accounts []string
	Total    int64
	Balance  func(value string) (int64, error)
}

// CheckBank is check (8): every OK transaction that reads every account
// (by gets or scans, each account's first read before the transaction's
// own write of it) sees balances that sum to Total, none negative.
// Non-transactional batches are not snapshots and are not checked. The
// violations can be added to Check's report (Report.Add). An error means
// b is incomplete or a value does not decode.
func CheckBank(h History, b Bank) ([]Violation, error) {
	if len(b.Accounts) == 0 {
		return nil, errors.New("bank: Accounts is empty")
	}
	if b.Balance == nil {
		return nil, errors.New("bank: Balance is nil")
	}
	accounts := map[string]bool{}
	for _, a := range b.Accounts {
		accounts[a] = true
	}
	var out []Violation
	for _, op := range h {
		if op.Kind != KindTxn || op.Outcome != OK {
			continue
		}
		bal := map[string]int64{}
		written := map[string]bool{}
		seen := func(step int, key string, found bool, value string) error {
			if _, done := bal[key]; done || !accounts[key] || written[key] {
				return nil
			}
			bal[key] = 0
			if !found {
				return nil
			}
			n, err := b.Balance(value)
			if err != nil {
				return fmt.Errorf("bank: op %d step %d: balance of %s=%q: %w", op.ID, step, key, value, err)
			}
			bal[key] = n
			return nil
		}
		for i, s := range op.Steps {
			var err error
			switch s.Kind {
			case StepPut, StepDelete:
				written[s.Key] = true
			case StepGet:
				err = seen(i, s.Key, s.Found, s.Value)
			case StepScan:
				rows := map[string]string{}
				for _, r := range s.Rows {
					rows[r.Key] = r.Value
				}
				for _, a := range b.Accounts {
					if a >= s.Key && a < s.EndKey && err == nil {
						v, ok := rows[a]
						err = seen(i, a, ok, v)
					}
				}
			}
			if err != nil {
				return nil, err
			}
		}
		if len(bal) < len(accounts) {
			continue
		}
		keys := make([]string, 0, len(bal))
		var sum int64
		for a, n := range bal {
			keys = append(keys, a)
			sum += n
		}
		sort.Strings(keys)
		var parts []string
		for _, a := range keys {
			parts = append(parts, fmt.Sprintf("%s=%d", a, bal[a]))
			if bal[a] < 0 {
				out = append(out, Violation{Class: BankNegative, Ops: []int{op.ID}, Keys: []string{a}, Timestamps: nonZero(op.ReadTS),
					Reason: fmt.Sprintf("op %d read a negative balance %s=%d", op.ID, a, bal[a])})
			}
		}
		if sum != b.Total {
			out = append(out, Violation{Class: BankSum, Ops: []int{op.ID}, Keys: keys, Timestamps: nonZero(op.ReadTS),
				Reason: fmt.Sprintf("op %d read %v: the sum is %d, want %d", op.ID, parts, sum, b.Total)})
		}
	}
	return out, nil
}

func nonZero(t Timestamp) []Timestamp {
	if t.IsZero() {
		return nil
	}
	return []Timestamp{t}
}
