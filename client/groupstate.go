package client

// Signed group states (docs/protocol.md §11.1–11.4): parsing, the
// structural rules, the signature and the rules for one state following
// another. Nothing here touches the database.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	"google.golang.org/protobuf/proto"

	"github.com/hush-chat/hush/internal/identity"
	"github.com/hush-chat/hush/internal/keys"
	"github.com/hush-chat/hush/wire"
)

// Group limits and labels (docs/protocol.md §11.1).
const (
	// GroupIDSize is the size of a group id: random bytes chosen by the
	// creator.
	GroupIDSize = 16
	// MaxGroupMembers bounds a group's members (and so a send's fan-out).
	MaxGroupMembers = 1000
	// MaxGroupName is the longest group name, in bytes.
	MaxGroupName = 64
	// groupStateLabel separates group-state signatures from every other
	// signature a device signing key makes.
	groupStateLabel = "Hush-GroupState-v1"
	// maxGroupStateSize bounds an encoded state: MaxGroupMembers names of
	// up to 32 bytes, twice (members and admins), with room to spare.
	maxGroupStateSize = 80 << 10
)

// ErrBadGroupState: a group state that is malformed, badly signed or does
// not follow the state it claims to follow.
var ErrBadGroupState = errors.New("invalid group state")

func badState(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadGroupState, fmt.Sprintf(format, args...))
}

// GroupID is a group's 16-byte id; its text form is 32 hex digits.
type GroupID [GroupIDSize]byte

func (id GroupID) String() string { return hex.EncodeToString(id[:]) }

// ParseGroupID parses the hex form.
func ParseGroupID(s string) (GroupID, error) {
	var id GroupID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != GroupIDSize {
		return id, fmt.Errorf("group id %q is not %d hex digits", s, 2*GroupIDSize)
	}
	copy(id[:], b)
	return id, nil
}

// groupState is a parsed, structurally valid SignedGroupState. Its
// signature is checked separately (verifySignature), since that needs
// the signer's device list.
type groupState struct {
	signed *wire.SignedGroupState
	st     *wire.GroupState
	id     GroupID
	hash   [sha256.Size]byte // of signed.State, the bytes signed
	// left: this account was the last member of this stored head and
	// left it (client/groupops.go); the state still names it.
	left bool
}

func (g *groupState) isMember(user string) bool {
	_, ok := slices.BinarySearch(g.st.GetMembers(), user)
	return ok
}

// active reports whether this account, self, is in the group: a member
// of the state that did not leave it as the last one.
func (g *groupState) active(self string) bool {
	return !g.left && g.isMember(self)
}

func (g *groupState) isAdmin(user string) bool {
	_, ok := slices.BinarySearch(g.st.GetAdmins(), user)
	return ok
}

func (g *groupState) signer() string { return g.signed.GetSigner() }

// encode returns the SignedGroupState encoding, as stored.
func (g *groupState) encode() ([]byte, error) {
	return proto.MarshalOptions{Deterministic: true}.Marshal(g.signed)
}

// parseSignedGroupState parses and checks a stored SignedGroupState
// encoding.
func parseSignedGroupState(b []byte) (*groupState, error) {
	var s wire.SignedGroupState
	if err := proto.Unmarshal(b, &s); err != nil {
		return nil, badState("%v", err)
	}
	return parseGroupState(&s)
}

// parseGroupState checks the structure of s (docs/protocol.md §11.1):
// the state bytes are the canonical encoding of a GroupState (so its hash
// and signature cover exactly what is shown), with a 16-byte id, a
// printable name, 1 to MaxGroupMembers canonical usernames in ascending
// order, at least one admin, every admin a member, the signer an admin
// named as changed_by, and a previous hash exactly when the epoch is
// above 1.
func parseGroupState(s *wire.SignedGroupState) (*groupState, error) {
	raw := s.GetState()
	if len(raw) > maxGroupStateSize {
		return nil, badState("%d bytes, the limit is %d", len(raw), maxGroupStateSize)
	}
	var st wire.GroupState
	if err := proto.Unmarshal(raw, &st); err != nil {
		return nil, badState("%v", err)
	}
	canon, err := proto.MarshalOptions{Deterministic: true}.Marshal(&st)
	if err != nil || !bytes.Equal(canon, raw) {
		return nil, badState("the state is not canonically encoded")
	}
	g := &groupState{signed: s, st: &st, hash: sha256.Sum256(raw)}
	if len(st.GetGroupId()) != GroupIDSize {
		return nil, badState("group id of %d bytes", len(st.GetGroupId()))
	}
	copy(g.id[:], st.GetGroupId())
	if err := checkGroupName(st.GetName()); err != nil {
		return nil, badState("%v", err)
	}
	if n := len(st.GetMembers()); n == 0 || n > MaxGroupMembers {
		return nil, badState("%d members, want 1 to %d", n, MaxGroupMembers)
	}
	if err := checkNames("member", st.GetMembers()); err != nil {
		return nil, err
	}
	if len(st.GetAdmins()) == 0 {
		return nil, badState("no admin")
	}
	if err := checkNames("admin", st.GetAdmins()); err != nil {
		return nil, err
	}
	for _, a := range st.GetAdmins() {
		if !g.isMember(a) {
			return nil, badState("admin %s is not a member", a)
		}
	}
	if st.GetEpoch() == 0 {
		return nil, badState("epoch 0")
	}
	if p := len(st.GetPrevious()); st.GetEpoch() == 1 && p != 0 || st.GetEpoch() > 1 && p != sha256.Size {
		return nil, badState("epoch %d with a previous hash of %d bytes", st.GetEpoch(), p)
	}
	if n, err := identity.NormalizeUsername(s.GetSigner()); err != nil || n != s.GetSigner() {
		return nil, badState("signer %q is not a username", s.GetSigner())
	}
	if st.GetChangedBy() != s.GetSigner() {
		return nil, badState("changed by %q but signed by %s", st.GetChangedBy(), s.GetSigner())
	}
	if s.GetSignerDevice() == 0 || s.GetSignerDevice() > identity.MaxDeviceID {
		return nil, badState("signer device %d", s.GetSignerDevice())
	}
	if len(s.GetSignature()) != keys.SignatureSize {
		return nil, badState("signature of %d bytes", len(s.GetSignature()))
	}
	return g, nil
}

// checkNames: canonical usernames in strictly ascending order.
func checkNames(what string, names []string) error {
	for i, n := range names {
		if c, err := identity.NormalizeUsername(n); err != nil || c != n {
			return badState("%s %q is not a username", what, n)
		}
		if i > 0 && names[i-1] >= n {
			return badState("%ss not in ascending order", what)
		}
	}
	return nil
}

// checkGroupName applies the rules a group name follows: short, valid
// UTF-8, no control characters (members see it).
func checkGroupName(name string) error {
	switch {
	case name == "":
		return errors.New("the group name is empty")
	case len(name) > MaxGroupName:
		return fmt.Errorf("the group name is %d bytes; the limit is %d", len(name), MaxGroupName)
	case !utf8.ValidString(name):
		return errors.New("the group name is not valid UTF-8")
	}
	for _, r := range name {
		// Line and paragraph separators break a terminal line like a
		// newline does; bidi controls reorder what follows them.
		if unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == '\u2028' || r == '\u2029' {
			return errors.New("the group name contains control characters")
		}
	}
	return nil
}

// groupSignedMessage is what a group-state signature covers: the label,
// the signer and its device, and the state bytes (docs/protocol.md §11.2).
func groupSignedMessage(signer string, device uint32, state []byte) []byte {
	var b cryptobyte.Builder
	b.AddBytes([]byte(groupStateLabel))
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(signer)) })
	b.AddUint32(device)
	b.AddBytes(state)
	return b.BytesOrPanic() // cannot fail: a username is shorter than 256 bytes
}

// signGroupState encodes st and signs it with this device's signing key.
func signGroupState(a *account, st *wire.GroupState) (*groupState, error) {
	st.ChangedBy = a.Username
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(st)
	if err != nil {
		return nil, err
	}
	s := &wire.SignedGroupState{State: raw, Signer: a.Username, SignerDevice: a.DeviceID}
	s.Signature = a.Signing.Sign(groupSignedMessage(s.Signer, s.SignerDevice, raw))
	return parseGroupState(s)
}

// verifySignature checks g's signature with the signing key of the
// signer's device, as certified by the signer's verified device list
// (docs/protocol.md §11.2).
func (g *groupState) verifySignature(list *identity.SignedDeviceList) error {
	if list == nil || list.List.Username != g.signer() {
		return badState("no verified device list of %s", g.signer())
	}
	d, ok := list.List.Find(g.signed.GetSignerDevice())
	if !ok {
		return badState("%s has no device %d", g.signer(), g.signed.GetSignerDevice())
	}
	if !d.SigningKey.Verify(groupSignedMessage(g.signer(), g.signed.GetSignerDevice(), g.signed.GetState()), g.signed.GetSignature()) {
		return badState("bad signature by %s/%d", g.signer(), g.signed.GetSignerDevice())
	}
	return nil
}

// checkGenesis checks a state that starts a group (epoch 1): its creator
// signed it and is its only admin.
func checkGenesis(g *groupState) error {
	if g.st.GetEpoch() != 1 {
		return badState("epoch %d does not start a group", g.st.GetEpoch())
	}
	if len(g.st.GetAdmins()) != 1 || g.st.GetAdmins()[0] != g.signer() {
		return badState("a new group's only admin must be its creator %s", g.signer())
	}
	return nil
}

// checkSuccessor checks that next may follow prev (docs/protocol.md
// §11.3): same group, the next epoch, prev's hash as previous, and a
// signer who was an admin in prev — or a member who only removed
// themselves (leaving needs no admin).
func checkSuccessor(prev, next *groupState) error {
	switch {
	case next.id != prev.id:
		return badState("a state of another group")
	case next.st.GetEpoch() != prev.st.GetEpoch()+1:
		return badState("epoch %d does not follow %d", next.st.GetEpoch(), prev.st.GetEpoch())
	case !bytes.Equal(next.st.GetPrevious(), prev.hash[:]):
		return badState("epoch %d does not follow the state held for epoch %d", next.st.GetEpoch(), prev.st.GetEpoch())
	}
	s := next.signer()
	if prev.isAdmin(s) {
		return nil
	}
	if !prev.isMember(s) {
		return badState("%s, not a member at epoch %d, cannot change the group", s, prev.st.GetEpoch())
	}
	left := slices.DeleteFunc(slices.Clone(prev.st.GetMembers()), func(m string) bool { return m == s })
	if next.st.GetName() != prev.st.GetName() || !slices.Equal(next.st.GetMembers(), left) || !slices.Equal(next.st.GetAdmins(), prev.st.GetAdmins()) {
		return badState("%s is not an admin at epoch %d; a member can only remove themselves", s, prev.st.GetEpoch())
	}
	return nil
}

// preferred reports whether b wins over a, two different states that
// both follow parent (two admins changed the group at once;
// docs/protocol.md §11.4). A state that takes away the other signer's
// admin role, when the other does not do the same back, wins: a removal
// cannot be undone by racing it. Otherwise the signers are ranked by
// SHA-256(hash(parent) || signer), lower first, and only two states of
// one signer are ranked by their own hashes. A signer can grind a state's
// hash by changing its time, but not its name or the parent, which was
// fixed before either state was made; so the one who answers a change by
// signing a competing state cannot choose to win.
func preferred(parent, a, b *groupState) bool {
	strips := func(x, y *groupState) bool { return parent.isAdmin(y.signer()) && !x.isAdmin(y.signer()) }
	ba, ab := strips(b, a), strips(a, b)
	if ba != ab {
		return ba
	}
	if a.signer() != b.signer() {
		ra, rb := signerRank(parent, a.signer()), signerRank(parent, b.signer())
		return bytes.Compare(rb[:], ra[:]) < 0
	}
	return bytes.Compare(b.hash[:], a.hash[:]) < 0
}

// signerRank orders the signers of states competing to follow parent.
func signerRank(parent *groupState, signer string) [sha256.Size]byte {
	h := sha256.New()
	h.Write(parent.hash[:])
	h.Write([]byte(signer))
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// diff returns who from is missing in to (removed) and who to adds (added).
func diff(from, to []string) (added, removed []string) {
	for _, m := range to {
		if _, ok := slices.BinarySearch(from, m); !ok {
			added = append(added, m)
		}
	}
	for _, m := range from {
		if _, ok := slices.BinarySearch(to, m); !ok {
			removed = append(removed, m)
		}
	}
	return added, removed
}

// sortedSet returns names sorted with duplicates removed.
func sortedSet(names []string) []string {
	out := slices.Clone(names)
	slices.Sort(out)
	return slices.Compact(out)
}
