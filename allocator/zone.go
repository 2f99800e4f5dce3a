package allocator

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rangestore/rangestore/proto/rspb"
)

// Zone configs: what a key span asks of its replicas. A ZoneConfig is a
// plain value: a span's own config sets some fields and inherits the rest
// from its parent (InheritFrom), ending at DefaultZoneConfig. Storing it
// replicated and the `zone` CLI are the caller's; this file parses the CLI
// syntax, validates, inherits and checks whether a config can be met by a
// set of nodes.
//
// The type maps field for field onto a proto message: the scalar fields
// are pointers (proto3 `optional`: nil = inherited), the lists carry a
// companion ...Set flag (a list set to empty, "no constraints", differs
// from one left to the parent).

// ConstraintType says whether a constraint requires or prohibits a tier.
type ConstraintType int

const (
	// Required: "+key=value", the node must have the tier.
	Required ConstraintType = iota
	// Prohibited: "-key=value", the node must not have it.
	Prohibited
)

// Constraint is one "+key=value" or "-key=value": a locality tier a node
// must (Required) or must not (Prohibited) have. Only key=value tiers are
// supported (no bare node attributes such as "+ssd").
type Constraint struct {
	Type  ConstraintType
	Key   string
	Value string
}

func (c Constraint) String() string {
	sign := "+"
	if c.Type == Prohibited {
		sign = "-"
	}
	return sign + c.Key + "=" + c.Value
}

// matches reports whether a node with these tiers has the constraint's
// tier (whatever the constraint's type).
func (c Constraint) matches(tiers []*rspb.LocalityTier) bool {
	for _, t := range tiers {
		if t.Key == c.Key && t.Value == c.Value {
			return true
		}
	}
	return false
}

// satisfiedBy reports whether a node with these tiers meets c.
func (c Constraint) satisfiedBy(tiers []*rspb.LocalityTier) bool {
	return c.matches(tiers) == (c.Type == Required)
}

// Conjunction is a set of constraints that hold together. NumReplicas 0
// applies it to every replica; NumReplicas N > 0 asks that at least N
// replicas meet it (per-replica-count constraints, which may only hold
// required constraints: the other replicas are free).
type Conjunction struct {
	NumReplicas int32
	Constraints []Constraint
}

// satisfiedBy reports whether a node with these tiers meets every
// constraint of c; the first failing one is returned.
func (c Conjunction) satisfiedBy(tiers []*rspb.LocalityTier) (bool, Constraint) {
	for _, k := range c.Constraints {
		if !k.satisfiedBy(tiers) {
			return false, k
		}
	}
	return true, Constraint{}
}

func (c Conjunction) String() string {
	parts := make([]string, len(c.Constraints))
	for i, k := range c.Constraints {
		parts[i] = k.String()
	}
	return strings.Join(parts, ",")
}

// LeasePreference is one conjunction of constraints a leaseholder should
// meet; a zone's preferences are tried in order, the first met wins.
type LeasePreference struct {
	Constraints []Constraint
}

func (p LeasePreference) String() string {
	return "[" + Conjunction{Constraints: p.Constraints}.String() + "]"
}

// ZoneConfig is the replication config of a key span. Nil pointers and
// unset lists are inherited from the parent config (InheritFrom).
type ZoneConfig struct {
	// NumReplicas is the total replica count: voters plus non-voters.
	NumReplicas *int32
	// NumVoters is the voter count (nil: NumReplicas); the rest are
	// non-voters.
	NumVoters *int32
	// NumNonVoters is the non-voter count, the num_non_voters:
	// num_replicas = num_voters + num_non_voters. Of the three, a config
	// sets any: two set give the third; all three must agree (Validate);
	// num_non_voters alone keeps the parent's voters (InheritFrom).
	NumNonVoters *int32
	// Constraints apply to every replica, voter or not.
	Constraints    []Conjunction
	ConstraintsSet bool
	// VoterConstraints apply to voters only, on top of Constraints.
	VoterConstraints    []Conjunction
	VoterConstraintsSet bool
	// NonVoterConstraints apply to the zone's non-voters only, on top of
	// Constraints. Set (non-empty), they also select the read-replica
	// nodes that hold a non-voter of the span (readReplicaRule).
	NonVoterConstraints    []Conjunction
	NonVoterConstraintsSet bool
	// LeasePreferences are tried in order for the leaseholder.
	LeasePreferences    []LeasePreference
	LeasePreferencesSet bool
	RangeMinBytes       *int64
	RangeMaxBytes       *int64
	// GCTTLSeconds is how long old versions are kept.
	GCTTLSeconds *int64
}

// Defaults of DefaultZoneConfig and limits of Validate.
const (
	DefaultNumReplicas   = 3
	DefaultRangeMaxBytes = 64 << 20
	DefaultRangeMinBytes = 16 << 20
	DefaultGCTTLSeconds  = int64(4 * time.Hour / time.Second)
	// MinRangeMaxBytes is the smallest range_max_bytes accepted.
	MinRangeMaxBytes = 64 << 10
)

func ptr[T any](v T) *T { return &v }

// DefaultZoneConfig is the root every config inherits from: 3 replicas,
// all voters, no constraints or lease preferences, ranges of 16-64 MiB,
// old versions kept 4 h.
func DefaultZoneConfig() ZoneConfig {
	return ZoneConfig{
		NumReplicas:            ptr(int32(DefaultNumReplicas)),
		ConstraintsSet:         true,
		VoterConstraintsSet:    true,
		NonVoterConstraintsSet: true,
		LeasePreferencesSet:    true,
		RangeMinBytes:          ptr(int64(DefaultRangeMinBytes)),
		RangeMaxBytes:          ptr(int64(DefaultRangeMaxBytes)),
		GCTTLSeconds:           ptr(DefaultGCTTLSeconds),
	}
}

// InheritFrom returns z with every field it leaves unset taken from
// parent. The counts go together: a config setting none of num_replicas,
// num_voters and num_non_voters takes the parent's three; num_voters
// alone takes the parent's num_replicas; num_non_voters alone takes the
// parent's voter count (num_replicas = it + num_non_voters); num_replicas
// alone, or two of them, take nothing (a span that sets num_replicas 5
// alone gets 5 voters, not its parent's voter count).
func (z ZoneConfig) InheritFrom(parent ZoneConfig) ZoneConfig {
	out := z
	switch {
	case out.NumReplicas == nil && out.NumVoters == nil && out.NumNonVoters == nil:
		out.NumReplicas, out.NumVoters, out.NumNonVoters = parent.NumReplicas, parent.NumVoters, parent.NumNonVoters
	case out.NumReplicas == nil && out.NumVoters == nil:
		if v := parent.Voters(); v > 0 {
			out.NumVoters = ptr(int32(v))
		}
	case out.NumReplicas == nil && out.NumNonVoters == nil:
		out.NumReplicas = parent.NumReplicas
	}
	if out.NumReplicas == nil && out.NumVoters != nil && out.NumNonVoters != nil {
		out.NumReplicas = ptr(*out.NumVoters + *out.NumNonVoters)
	}
	if !out.ConstraintsSet {
		out.Constraints, out.ConstraintsSet = parent.Constraints, parent.ConstraintsSet
	}
	if !out.VoterConstraintsSet {
		out.VoterConstraints, out.VoterConstraintsSet = parent.VoterConstraints, parent.VoterConstraintsSet
	}
	if !out.NonVoterConstraintsSet {
		out.NonVoterConstraints, out.NonVoterConstraintsSet = parent.NonVoterConstraints, parent.NonVoterConstraintsSet
	}
	if !out.LeasePreferencesSet {
		out.LeasePreferences, out.LeasePreferencesSet = parent.LeasePreferences, parent.LeasePreferencesSet
	}
	if out.RangeMinBytes == nil {
		out.RangeMinBytes = parent.RangeMinBytes
	}
	if out.RangeMaxBytes == nil {
		out.RangeMaxBytes = parent.RangeMaxBytes
	}
	if out.GCTTLSeconds == nil {
		out.GCTTLSeconds = parent.GCTTLSeconds
	}
	return out
}

// Resolve inherits z from the default config and validates the result.
func (z ZoneConfig) Resolve() (ZoneConfig, error) {
	r := z.InheritFrom(DefaultZoneConfig())
	return r, r.Validate()
}

// Replicas is the total replica count: NumReplicas, or NumVoters +
// NumNonVoters (0 if unknown).
func (z ZoneConfig) Replicas() int {
	switch {
	case z.NumReplicas != nil:
		return int(*z.NumReplicas)
	case z.NumVoters != nil && z.NumNonVoters != nil:
		return int(*z.NumVoters + *z.NumNonVoters)
	}
	return 0
}

// Voters is the voter count: NumVoters, or NumReplicas − NumNonVoters, or
// NumReplicas when neither is set.
func (z ZoneConfig) Voters() int {
	switch {
	case z.NumVoters != nil:
		return int(*z.NumVoters)
	case z.NumReplicas != nil && z.NumNonVoters != nil:
		return int(*z.NumReplicas - *z.NumNonVoters)
	}
	return z.Replicas()
}

// NonVoters is the zone's non-voter count: Replicas − Voters.
func (z ZoneConfig) NonVoters() int { return max(0, z.Replicas()-z.Voters()) }

// readReplicaRule is how a range's resolved zone governs the non-voters of
// the read-replica nodes (Node.ReadReplica).
type readReplicaRule int

const (
	// rrEvery: the zone sets neither num_non_voters nor
	// non_voter_constraints: every live read replica holds a non-voter of
	// the range, beyond the zone's num_replicas (whose non-voters, when
	// num_replicas exceeds num_voters, go on ordinary nodes).
	rrEvery readReplicaRule = iota
	// rrSelected: the zone sets non_voter_constraints but not
	// num_non_voters: only the read replicas they select hold one (still
	// beyond num_replicas); the others lose theirs.
	rrSelected
	// rrCounted: the zone sets num_non_voters N: the range has N
	// non-voters in all, on read replicas first (those meeting the
	// non-voter constraints), on ordinary nodes when too few read
	// replicas can hold one; N = 0: no read replica holds the span.
	rrCounted
)

// readReplicaRule says which rule applies to z (resolved): num_non_voters
// set anywhere up the inheritance chain counts (DefaultZoneConfig leaves
// it nil); non_voter_constraints count when they are not empty (the
// default sets them empty).
func (z ZoneConfig) readReplicaRule() readReplicaRule {
	switch {
	case z.NumNonVoters != nil:
		return rrCounted
	case len(z.NonVoterConstraints) > 0:
		return rrSelected
	}
	return rrEvery
}

// Validate checks a config as a whole, each field and between fields,
// with an ErrInvalid error naming the field and the limit. A partial
// config (some fields unset) is checked on the fields it sets; a resolved
// one (InheritFrom the default) must set num_replicas.
func (z ZoneConfig) Validate() error {
	if z.NumReplicas != nil && *z.NumReplicas < 1 {
		return invalid("num_replicas: must be at least 1 (got %d)", *z.NumReplicas)
	}
	if z.NumVoters != nil {
		if *z.NumVoters < 1 {
			return invalid("num_voters: must be at least 1 (got %d)", *z.NumVoters)
		}
		if z.NumReplicas != nil && *z.NumVoters > *z.NumReplicas {
			return invalid("num_voters: %d is more than num_replicas %d", *z.NumVoters, *z.NumReplicas)
		}
	}
	if n := z.NumNonVoters; n != nil {
		switch {
		case *n < 0:
			return invalid("num_non_voters: must not be negative (got %d)", *n)
		case z.NumReplicas != nil && z.NumVoters != nil && *z.NumVoters+*n != *z.NumReplicas:
			return invalid("num_non_voters: num_voters %d + num_non_voters %d is %d, not num_replicas %d (set two of the three; the third follows)",
				*z.NumVoters, *n, *z.NumVoters+*n, *z.NumReplicas)
		case z.NumReplicas != nil && z.NumVoters == nil && *z.NumReplicas-*n < 1:
			return invalid("num_non_voters: %d leaves no voter of num_replicas %d", *n, *z.NumReplicas)
		}
	}
	if v := z.Voters(); v > 0 && v%2 == 0 {
		field := "num_replicas"
		switch {
		case z.NumVoters != nil:
			field = "num_voters"
		case z.NumNonVoters != nil:
			field = "num_replicas - num_non_voters"
		}
		return invalid("%s: %d voters must be odd (%d voters tolerate no more failures than %d)", field, v, v, v-1)
	}
	if err := validateConjunctions("constraints", z.Constraints, z.Replicas()); err != nil {
		return err
	}
	if err := validateConjunctions("voter_constraints", z.VoterConstraints, z.Voters()); err != nil {
		return err
	}
	if err := validateConjunctions("non_voter_constraints", z.NonVoterConstraints, z.NonVoters()); err != nil {
		return err
	}
	for i, p := range z.LeasePreferences {
		if len(p.Constraints) == 0 {
			return invalid("lease_preferences: preference %d is empty", i+1)
		}
		if err := validateConstraints("lease_preferences", p.Constraints); err != nil {
			return err
		}
	}
	if z.RangeMinBytes != nil && *z.RangeMinBytes < 0 {
		return invalid("range_min_bytes: must not be negative (got %d)", *z.RangeMinBytes)
	}
	if z.RangeMaxBytes != nil && *z.RangeMaxBytes < MinRangeMaxBytes {
		return invalid("range_max_bytes: must be at least %d (got %d)", MinRangeMaxBytes, *z.RangeMaxBytes)
	}
	if z.RangeMinBytes != nil && z.RangeMaxBytes != nil && *z.RangeMinBytes >= *z.RangeMaxBytes {
		return invalid("range_min_bytes: %d must be less than range_max_bytes %d", *z.RangeMinBytes, *z.RangeMaxBytes)
	}
	if z.GCTTLSeconds != nil && *z.GCTTLSeconds < 1 {
		return invalid("gc_ttl: must be at least 1 second (got %d)", *z.GCTTLSeconds)
	}
	return nil
}

func validateConjunctions(field string, cs []Conjunction, replicas int) error {
	sum := 0
	for _, c := range cs {
		if c.NumReplicas < 0 {
			return invalid("%s: replica count %d of %q must not be negative", field, c.NumReplicas, c.String())
		}
		if len(c.Constraints) == 0 {
			return invalid("%s: a constraint set is empty", field)
		}
		if err := validateConstraints(field, c.Constraints); err != nil {
			return err
		}
		if c.NumReplicas > 0 {
			for _, k := range c.Constraints {
				if k.Type == Prohibited {
					return invalid("%s: %q: only required constraints (+) can apply to a number of replicas", field, k.String())
				}
			}
			sum += int(c.NumReplicas)
		}
	}
	if replicas > 0 && sum > replicas {
		return invalid("%s: the per-replica counts add up to %d, more than the %d replicas", field, sum, replicas)
	}
	return nil
}

func validateConstraints(field string, ks []Constraint) error {
	seen := make(map[string]ConstraintType)
	for _, k := range ks {
		if k.Key == "" || k.Value == "" {
			return invalid("%s: malformed constraint %q: want +key=value or -key=value", field, k.String())
		}
		tier := k.Key + "=" + k.Value
		if t, ok := seen[tier]; ok && t != k.Type {
			return invalid("%s: %s is both required and prohibited", field, tier)
		}
		seen[tier] = k.Type
	}
	return nil
}

// ParseConstraint parses "+key=value" or "-key=value".
func ParseConstraint(field, s string) (Constraint, error) {
	s = strings.TrimSpace(s)
	var c Constraint
	switch {
	case strings.HasPrefix(s, "+"):
		c.Type = Required
	case strings.HasPrefix(s, "-"):
		c.Type = Prohibited
	default:
		return c, invalid("%s: malformed constraint %q: must start with + (required) or - (prohibited)", field, s)
	}
	k, v, ok := strings.Cut(s[1:], "=")
	k, v = strings.TrimSpace(k), strings.TrimSpace(v)
	if !ok || k == "" || v == "" {
		return c, invalid("%s: malformed constraint %q: want +key=value or -key=value (locality tiers only)", field, s)
	}
	if strings.ContainsAny(k+v, "=,[]{}\" \t") {
		return c, invalid("%s: malformed constraint %q: key and value must not contain = , [ ] { } quotes or spaces", field, s)
	}
	c.Key, c.Value = k, v
	return c, nil
}

// parseConstraintList parses "+a=b,-c=d" (brackets already stripped);
// empty gives none.
func parseConstraintList(field, s string) ([]Constraint, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []Constraint
	for _, part := range strings.Split(s, ",") {
		c, err := ParseConstraint(field, part)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// unbracket strips one pair of enclosing brackets open...close if s has
// them; ok is false if it opens without closing or the reverse.
func unbracket(s string, open, close byte) (inner string, had, ok bool) {
	s = strings.TrimSpace(s)
	hasOpen := len(s) > 0 && s[0] == open
	hasClose := len(s) > 0 && s[len(s)-1] == close
	if hasOpen != hasClose || (hasOpen && len(s) < 2) {
		return s, false, false
	}
	if !hasOpen {
		return s, false, true
	}
	return s[1 : len(s)-1], true, true
}

// ParseConstraints parses the CLI syntax of --constraints,
// --voter-constraints and --non-voter-constraints (field names the flag
// in errors):
//
//	+region=eu,-zone=a            every replica meets all of them
//	[+region=eu, -zone=a]         the same
//	{"+region=eu": 2, "+region=us,+zone=a": 1}
//	                              per-replica counts: at least 2 replicas
//	                              in eu and 1 in us zone a
//	"" or []                      no constraints
//
// Each result is validated as far as it goes alone (counts against
// num_replicas are checked by ZoneConfig.Validate).
func ParseConstraints(field, s string) ([]Conjunction, error) {
	s = strings.TrimSpace(s)
	if inner, had, ok := unbracket(s, '{', '}'); !ok {
		return nil, invalid("%s: malformed %q: unbalanced { }", field, s)
	} else if had {
		return parseCountedConstraints(field, inner)
	}
	inner, _, ok := unbracket(s, '[', ']')
	if !ok {
		return nil, invalid("%s: malformed %q: unbalanced [ ]", field, s)
	}
	if strings.ContainsAny(inner, "[]{}") {
		return nil, invalid("%s: malformed %q: want a list +k=v,-k=v or a map {\"+k=v\": N}", field, s)
	}
	ks, err := parseConstraintList(field, inner)
	if err != nil || len(ks) == 0 {
		return nil, err
	}
	cs := []Conjunction{{Constraints: ks}}
	return cs, validateConjunctions(field, cs, 0)
}

// parseCountedConstraints parses the inside of {"+a=b,+c=d": 2, ...}.
func parseCountedConstraints(field, s string) ([]Conjunction, error) {
	var out []Conjunction
	rest := strings.TrimSpace(s)
	for rest != "" {
		if rest[0] != '"' {
			return nil, invalid("%s: malformed map entry %q: want \"+key=value,...\": count", field, rest)
		}
		end := strings.IndexByte(rest[1:], '"')
		if end < 0 {
			return nil, invalid("%s: malformed map entry %q: unterminated quote", field, rest)
		}
		key := rest[1 : 1+end]
		rest = strings.TrimSpace(rest[2+end:])
		if !strings.HasPrefix(rest, ":") {
			return nil, invalid("%s: malformed map entry for %q: want \": count\"", field, key)
		}
		rest = strings.TrimSpace(rest[1:])
		numEnd := strings.IndexByte(rest, ',')
		num := rest
		if numEnd >= 0 {
			num, rest = rest[:numEnd], strings.TrimSpace(rest[numEnd+1:])
		} else {
			rest = ""
		}
		n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 32)
		if err != nil || n < 1 {
			return nil, invalid("%s: replica count %q of %q: must be an integer of at least 1", field, strings.TrimSpace(num), key)
		}
		ks, err := parseConstraintList(field, key)
		if err != nil {
			return nil, err
		}
		out = append(out, Conjunction{NumReplicas: int32(n), Constraints: ks})
	}
	if len(out) == 0 {
		return nil, invalid("%s: an empty map {} sets no count; use [] for no constraints", field)
	}
	return out, validateConjunctions(field, out, 0)
}

// ParseLeasePreferences parses --lease-preferences:
//
//	[+region=us]                       one preference
//	[[+region=us,+zone=a], [+region=eu]]  tried in order
//	+region=us                         one preference
//	"" or []                           none
func ParseLeasePreferences(s string) ([]LeasePreference, error) {
	const field = "lease_preferences"
	s = strings.TrimSpace(s)
	inner, had, ok := unbracket(s, '[', ']')
	if !ok {
		return nil, invalid("%s: malformed %q: unbalanced [ ]", field, s)
	}
	inner = strings.TrimSpace(inner)
	var groups []string
	if had && strings.HasPrefix(inner, "[") {
		rest := inner
		for rest != "" {
			if rest[0] != '[' {
				return nil, invalid("%s: malformed %q: want [[+k=v,...], [+k=v,...]]", field, s)
			}
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil, invalid("%s: malformed %q: unbalanced [ ]", field, s)
			}
			groups = append(groups, rest[1:end])
			rest = strings.TrimSpace(rest[end+1:])
			rest = strings.TrimSpace(strings.TrimPrefix(rest, ","))
		}
	} else {
		groups = []string{inner}
	}
	var out []LeasePreference
	for _, g := range groups {
		if strings.ContainsAny(g, "[]{}") {
			return nil, invalid("%s: malformed %q: want [[+k=v,...], [+k=v,...]]", field, s)
		}
		ks, err := parseConstraintList(field, g)
		if err != nil {
			return nil, err
		}
		if len(ks) == 0 {
			if len(groups) == 1 {
				return nil, nil
			}
			return nil, invalid("%s: preference %d is empty", field, len(out)+1)
		}
		if err := validateConstraints(field, ks); err != nil {
			return nil, err
		}
		out = append(out, LeasePreference{Constraints: ks})
	}
	return out, nil
}

// ParseZoneConfig parses the CLI flags of `zone set` given as name=value
// (num_replicas, num_voters, num_non_voters, constraints,
// voter_constraints, non_voter_constraints, lease_preferences,
// range_min_bytes, range_max_bytes, gc_ttl as seconds
// or a Go duration such as 4h); flags not given stay unset (inherited).
// The result is validated as a partial config.
func ParseZoneConfig(flags map[string]string) (ZoneConfig, error) {
	var z ZoneConfig
	names := make([]string, 0, len(flags))
	for k := range flags {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, name := range names {
		v := strings.TrimSpace(flags[name])
		var err error
		switch name {
		case "num_replicas", "num_voters", "num_non_voters":
			var n int64
			n, err = strconv.ParseInt(v, 10, 32)
			if err != nil {
				return z, invalid("%s: %q is not an integer", name, v)
			}
			switch name {
			case "num_replicas":
				z.NumReplicas = ptr(int32(n))
			case "num_voters":
				z.NumVoters = ptr(int32(n))
			default:
				z.NumNonVoters = ptr(int32(n))
			}
		case "constraints":
			z.Constraints, err = ParseConstraints(name, v)
			z.ConstraintsSet = true
		case "voter_constraints":
			z.VoterConstraints, err = ParseConstraints(name, v)
			z.VoterConstraintsSet = true
		case "non_voter_constraints":
			z.NonVoterConstraints, err = ParseConstraints(name, v)
			z.NonVoterConstraintsSet = true
		case "lease_preferences":
			z.LeasePreferences, err = ParseLeasePreferences(v)
			z.LeasePreferencesSet = true
		case "range_min_bytes", "range_max_bytes":
			var n int64
			n, err = strconv.ParseInt(v, 10, 64)
			if err != nil {
				return z, invalid("%s: %q is not an integer", name, v)
			}
			if name == "range_min_bytes" {
				z.RangeMinBytes = ptr(n)
			} else {
				z.RangeMaxBytes = ptr(n)
			}
		case "gc_ttl":
			secs, perr := strconv.ParseInt(v, 10, 64)
			if perr != nil {
				d, derr := time.ParseDuration(v)
				if derr != nil {
					return z, invalid("gc_ttl: %q is neither seconds nor a duration like 4h", v)
				}
				secs = int64(d / time.Second)
			}
			z.GCTTLSeconds = ptr(secs)
		default:
			return z, invalid("%s: unknown zone config field (want num_replicas, num_voters, num_non_voters, constraints, voter_constraints, non_voter_constraints, lease_preferences, range_min_bytes, range_max_bytes or gc_ttl)", name)
		}
		if err != nil {
			return z, err
		}
	}
	return z, z.Validate()
}

// String prints the fields z sets in the CLI syntax, one name=value per
// field, in the order of the type ("(inherits everything)" if none).
func (z ZoneConfig) String() string {
	var parts []string
	if z.NumReplicas != nil {
		parts = append(parts, fmt.Sprintf("num_replicas=%d", *z.NumReplicas))
	}
	if z.NumVoters != nil {
		parts = append(parts, fmt.Sprintf("num_voters=%d", *z.NumVoters))
	}
	if z.NumNonVoters != nil {
		parts = append(parts, fmt.Sprintf("num_non_voters=%d", *z.NumNonVoters))
	}
	if z.ConstraintsSet {
		parts = append(parts, "constraints="+formatConjunctions(z.Constraints))
	}
	if z.VoterConstraintsSet {
		parts = append(parts, "voter_constraints="+formatConjunctions(z.VoterConstraints))
	}
	if z.NonVoterConstraintsSet {
		parts = append(parts, "non_voter_constraints="+formatConjunctions(z.NonVoterConstraints))
	}
	if z.LeasePreferencesSet {
		ps := make([]string, len(z.LeasePreferences))
		for i, p := range z.LeasePreferences {
			ps[i] = p.String()
		}
		parts = append(parts, "lease_preferences=["+strings.Join(ps, ",")+"]")
	}
	if z.RangeMinBytes != nil {
		parts = append(parts, fmt.Sprintf("range_min_bytes=%d", *z.RangeMinBytes))
	}
	if z.RangeMaxBytes != nil {
		parts = append(parts, fmt.Sprintf("range_max_bytes=%d", *z.RangeMaxBytes))
	}
	if z.GCTTLSeconds != nil {
		parts = append(parts, fmt.Sprintf("gc_ttl=%d", *z.GCTTLSeconds))
	}
	if len(parts) == 0 {
		return "(inherits everything)"
	}
	return strings.Join(parts, " ")
}

func formatConjunctions(cs []Conjunction) string {
	if len(cs) == 0 {
		return "[]"
	}
	if len(cs) == 1 && cs[0].NumReplicas == 0 {
		return "[" + cs[0].String() + "]"
	}
	parts := make([]string, len(cs))
	for i, c := range cs {
		if c.NumReplicas == 0 {
			parts[i] = fmt.Sprintf("%q: all", c.String())
		} else {
			parts[i] = fmt.Sprintf("%q: %d", c.String(), c.NumReplicas)
		}
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// Satisfiable checks a resolved config against the nodes that can hold
// replicas (live, active or draining: a drain is temporary): it returns
// one "constraint not satisfiable: ..." line per unmet need, none if the
// config can be met. A config that is valid but not satisfiable is
// accepted; ranges under it report these lines and get no replica on a
// node that breaks a constraint.
//
// For a zone that sets num_non_voters (rrCounted), whose non-voters go on
// read-replica nodes first, the read replicas count for the non-voters and
// the replicas but not for the voters (they hold none); otherwise every
// such node counts, as it always did.
func Satisfiable(z ZoneConfig, nodes []Node) []string {
	var usable, nonVoterHolders []*Node
	counted := z.readReplicaRule() == rrCounted
	for i := range nodes {
		n := &nodes[i]
		if n.Liveness == Live && (n.Membership == Active || n.Membership == Draining) {
			if !n.ReadReplica || !counted {
				usable = append(usable, n)
			}
			nonVoterHolders = append(nonVoterHolders, n)
		}
	}
	var out []string
	check := func(field string, cs []Conjunction, want int, what string) {
		holders := usable
		if what != "voters" {
			holders = nonVoterHolders
		}
		// Nodes meeting every all-replica conjunction of cs.
		var ok []*Node
		for _, n := range holders {
			good := true
			for _, c := range cs {
				if c.NumReplicas == 0 {
					if sat, _ := c.satisfiedBy(n.Locality); !sat {
						good = false
					}
				}
			}
			if good {
				ok = append(ok, n)
			}
		}
		var all []string
		for _, c := range cs {
			if c.NumReplicas == 0 {
				all = append(all, c.String())
			}
		}
		if len(all) > 0 && len(ok) < want {
			out = append(out, fmt.Sprintf("constraint not satisfiable: %s [%s]: %d %s wanted, %d live nodes meet it%s",
				field, strings.Join(all, "] ["), want, what, len(ok), idsIn(ok)))
		}
		for _, c := range cs {
			if c.NumReplicas == 0 {
				continue
			}
			var m []*Node
			for _, n := range ok {
				if sat, _ := c.satisfiedBy(n.Locality); sat {
					m = append(m, n)
				}
			}
			if len(m) < int(c.NumReplicas) {
				out = append(out, fmt.Sprintf("constraint not satisfiable: %s %q: %d %s wanted there, %d live nodes meet it%s",
					field, c.String(), c.NumReplicas, what, len(m), idsIn(m)))
			}
		}
	}
	if len(nonVoterHolders) < z.Replicas() && z.Replicas() > 0 {
		out = append(out, fmt.Sprintf("constraint not satisfiable: num_replicas %d: only %d live nodes can hold replicas%s",
			z.Replicas(), len(nonVoterHolders), idsIn(nonVoterHolders)))
	} else if v := z.Voters(); len(usable) < v {
		// (Only when read replicas count for the non-voters.)
		out = append(out, fmt.Sprintf("constraint not satisfiable: num_voters %d: only %d live nodes can hold voters%s (read replicas hold none)",
			v, len(usable), idsIn(usable)))
	}
	check("constraints", z.Constraints, z.Replicas(), "replicas")
	if z.VoterConstraintsSet && len(z.VoterConstraints) > 0 {
		// Voters also meet every all-replica constraint.
		var vc []Conjunction
		for _, c := range z.Constraints {
			if c.NumReplicas == 0 {
				vc = append(vc, c)
			}
		}
		check("voter_constraints", append(vc, z.VoterConstraints...), z.Voters(), "voters")
	}
	if z.NonVoterConstraintsSet && len(z.NonVoterConstraints) > 0 && z.NonVoters() > 0 {
		// Non-voters also meet every all-replica constraint.
		var nc []Conjunction
		for _, c := range z.Constraints {
			if c.NumReplicas == 0 {
				nc = append(nc, c)
			}
		}
		check("non_voter_constraints", append(nc, z.NonVoterConstraints...), z.NonVoters(), "non-voters")
	}
	return out
}

func idsIn(ns []*Node) string {
	if len(ns) == 0 {
		return ""
	}
	ids := make([]uint64, len(ns))
	for i, n := range ns {
		ids[i] = n.ID
	}
	return " (" + nodeList(ids) + ")"
}
