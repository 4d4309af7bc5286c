package sqlite

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"unsafe"

	"github.com/verityhq/verity"
)

// pinCache holds, for users whose PIN was recently started or checked, what
// a check reads: the user's row and its newest PIN, and, once a check has
// gone to the user's authenticator app, the active app. A check that finds
// its user here skips those reads, which were about a sixth of the
// server's CPU per check (profile of the benchmark's check scenario; the
// app's read another 14 % in the totp scenario) and ran on the single
// writer that every write waits for.
//
// It is a write-through cache owned by the writer goroutine: only write
// functions and the queue's loop touch it, so it needs no lock, and what
// it holds is what the writer's own transaction would read. It stays right
// because every change to the database passes the write queue:
//
//   - a write that keeps it (StartPIN, CheckPIN) updates or drops the one
//     user it names, from what it wrote, and only after the write applied;
//     the queue drops that user's entry if the write then fails;
//   - any other write clears the whole cache after it runs (see
//     writeOp.keeps), whatever it changed;
//   - a failed commit clears it, since the batch's changes are undone;
//   - another connection's commit (another process, or migrations on the
//     writer pool, whose connections are not the queue's) is caught by
//     PRAGMA data_version at the start of the next batch, which clears it.
//
// Even a stale entry could not let a PIN verify twice or a try go
// uncounted: the writes that consume a PIN or count a try are conditional
// statements that check the row itself. It could only give a wrong answer,
// which is why the rules above keep it exact.
//
// # Layout
//
// The entries live outside Go's heap, as bytes, so that the cache can hold
// the PINs pending at a busy service without the garbage collector
// scanning them or growing the heap to several times their size (GOGC=400,
// see cmd/verity). When it held Go structs, 16,384 of them were most of
// the live heap, and 131,072 raised the check benchmark's peak RSS from
// 143 to 392 MB.
//
//   - ring: each entry is a record appended at head. A counted try and a
//     used step overwrite the record's numbers in place; any other change
//     appends the entry anew and kills the old record. The oldest records
//     are evicted from tail to make room, so the cache forgets users in
//     about the order they were started: first in, first out, which suits
//     PINs, checked in about the order they were sent.
//   - index: an open-addressing hash table (linear probing) from a user's
//     id to the absolute position of its live record. It holds exactly the
//     live records: eviction removes a record's slot, and clear starts a
//     new generation, which empties every slot at once.
//
// Times are kept in microseconds, as the database keeps them, so a decoded
// entry equals what a read of the rows returns. A killed or evicted
// record's bytes are zeroed: a consumed PIN's hash (or an app's encrypted
// seed) does not linger in memory until the ring comes round, and neither
// does a record that clear forgets.
type pinCache struct {
	ring       []byte
	head, tail uint64 // absolute positions: ring[pos % len(ring)]; the ring holds [tail, head)
	index      []indexSlot
	gen        uint32 // slots of another generation are empty
	count      int    // live records, at most limit
	limit      int
	seed       maphash.Seed
	scratch    []byte // the record being encoded
	release    func() // returns ring and index to the system
}

// indexSlot maps the user whose id hashes to hash to its record at pos.
type indexSlot struct {
	hash uint64
	pos  uint64
	gen  uint32
	_    uint32
}

// cachedUserPIN is a user's row, its seq (the key of user_failures) and
// newest PIN (nil when it has none), and, when appKnown, the user's active
// authenticator app (nil: none): one decoded record.
type cachedUserPIN struct {
	user     verity.User
	seq      int64
	pin      *verity.PIN
	app      *verity.Factor
	appKnown bool
}

// pinCacheLimit and pinCacheRingBytes bound the cache: 131,072 users in a
// ring of 32 MiB, with an index of 262,144 slots (6 MiB), half full at
// most. A record of a user and a PIN takes about 260 bytes (410 with an
// app), so the ring holds some 125,000 of them. Both are mapped memory,
// resident as it is first written. 131,072 users cover the PINs
// pending at a service that sends 4,000 a second and sees them typed
// within 30 seconds, and the benchmark's check scenario, which starts
// every PIN of a phase (some 60,000) before it checks them: at 16,384
// entries half of its checks missed the cache and read the user and PIN on
// the writer, 16 % of the server's CPU.
const (
	pinCacheLimit     = 1 << 17
	pinCacheRingBytes = 32 << 20
)

// Record layout. A header: the record's length (uint32, the header
// included; 0 marks the rest of the ring as unused, where a record did not
// fit before the end), a live byte (0 once killed) and the flags below.
// Then, at fixed offsets, the numbers a check changes, which counted and
// stepUsed overwrite in place; then the user id, the other fields of the
// user, the PIN's and the app's, in the order encode writes them. Strings
// and byte slices carry a uint16 length.
const (
	offLength        = 0
	offLive          = 4
	offFlags         = 5
	offSeq           = 6
	offFailureCount  = offSeq + 8
	offFailureWindow = offFailureCount + 8
	offPINAttempts   = offFailureWindow + 8
	offAppLastStep   = offPINAttempts + 8
	offUserID        = offAppLastStep + 8

	maxRecord = 2048 // a larger entry is not cached
)

// Flags of a record.
const (
	hasPIN = 1 << iota
	pinConsumed
	appKnown
	hasApp
)

func newPINCache(limit, ringBytes int) *pinCache {
	slots := 1
	for slots < 2*limit {
		slots <<= 1
	}
	slotSize := int(unsafe.Sizeof(indexSlot{}))
	ring, freeRing := offHeap(ringBytes)
	idx, freeIdx := offHeap(slots * slotSize)
	return &pinCache{
		ring:    ring,
		index:   unsafe.Slice((*indexSlot)(unsafe.Pointer(unsafe.SliceData(idx))), slots),
		gen:     1,
		limit:   limit,
		seed:    maphash.MakeSeed(),
		scratch: make([]byte, 0, 512),
		release: func() { freeRing(); freeIdx() },
	}
}

// close returns the cache's memory; the cache must not be used after it.
func (c *pinCache) close() {
	c.ring, c.index = nil, nil
	c.release()
}

// len returns the number of users cached.
func (c *pinCache) len() int { return c.count }

// get returns copies of the cached user and PIN, and the user's seq, or ok
// false when the user is not cached (or belongs to another service: the
// read then answers).
func (c *pinCache) get(userID, serviceID string) (u *verity.User, seq int64, p *verity.PIN, ok bool) {
	_, pos, found := c.lookup(userID)
	if !found || serviceID == "" { // decode takes "" for any service; no user has none
		return nil, 0, nil, false
	}
	e, ok := c.decode(pos, userID, serviceID, false)
	if !ok {
		return nil, 0, nil, false
	}
	u = new(verity.User)
	*u = e.user
	return u, e.seq, e.pin, true
}

// put caches u and p, and u's seq, as the database holds them now; the
// user's app is not known until putApp.
func (c *pinCache) put(u *verity.User, seq int64, p *verity.PIN) {
	c.store(&cachedUserPIN{user: *u, seq: seq, pin: p})
}

// drop forgets one user.
func (c *pinCache) drop(userID string) {
	if i, pos, found := c.lookup(userID); found {
		c.kill(i, pos)
	}
}

// clear forgets every user at once: a new generation empties every slot
// of the index, and the records, zeroed, become the free part of the ring.
// Zeroing costs what writing them did, once.
func (c *pinCache) clear() {
	size := uint64(len(c.ring))
	for pos := c.tail; pos < c.head; {
		off := pos % size
		n := min(c.head-pos, size-off)
		clear(c.ring[off : off+n])
		pos += n
	}
	if c.count == 0 {
		c.tail = c.head
		return
	}
	c.gen++
	if c.gen == 0 { // wrapped: slots of generation 1 may still be set
		clear(c.index)
		c.gen = 1
	}
	c.count = 0
	c.tail = c.head
}

// counted records countFailedTry's applied UPDATEs, computed the way their
// SQL computes them from the row before, in the user's record.
func (c *pinCache) counted(f verity.FailedTry) {
	_, pos, found := c.lookup(f.UserID)
	if !found {
		return
	}
	rec := c.record(pos)
	if f.PINID != "" {
		if rec[offFlags]&hasPIN == 0 || string(c.pinID(rec)) != f.PINID {
			c.drop(f.UserID)
			return
		}
		addInt(rec[offPINAttempts:], 1)
	}
	if getInt(rec[offFailureWindow:]) > micros(f.FailureWindowStart) {
		addInt(rec[offFailureCount:], 1)
	} else {
		putInt(rec[offFailureCount:], 1)
		putInt(rec[offFailureWindow:], micros(f.Now))
	}
}

// app returns the user's cached active app (nil when the user has none),
// or known false when the cache cannot say.
func (c *pinCache) app(userID string) (f *verity.Factor, known bool) {
	_, pos, found := c.lookup(userID)
	if !found || c.record(pos)[offFlags]&appKnown == 0 {
		return nil, false
	}
	return c.decodeApp(c.record(pos), userID), true
}

// putApp caches the user's active app as the database holds it now (nil:
// none), for a user already cached.
func (c *pinCache) putApp(userID string, f *verity.Factor) {
	e, ok := c.entry(userID)
	if !ok {
		return
	}
	e.app, e.appKnown = f, true
	c.store(&e)
}

// stepUsed records useStep's applied UPDATE, in the user's record: the
// app's last step is step.
func (c *pinCache) stepUsed(userID, factorID string, step int64) {
	_, pos, found := c.lookup(userID)
	if !found {
		return
	}
	rec := c.record(pos)
	if rec[offFlags]&hasApp == 0 || string(c.appID(rec)) != factorID {
		c.drop(userID)
		return
	}
	putInt(rec[offAppLastStep:], step)
}

// each calls fn with every cached entry, for tests.
func (c *pinCache) each(fn func(userID string, e cachedUserPIN)) {
	for _, s := range c.index {
		if s.gen != c.gen {
			continue
		}
		id := c.recordUserID(s.pos)
		if e, ok := c.decode(s.pos, string(id), "", true); ok {
			fn(string(id), e)
		}
	}
}

// entry decodes the user's entry, of any service.
func (c *pinCache) entry(userID string) (cachedUserPIN, bool) {
	_, pos, found := c.lookup(userID)
	if !found {
		return cachedUserPIN{}, false
	}
	return c.decode(pos, userID, "", true)
}

// store makes e the user's entry, replacing any before it. An entry too
// large for a record is dropped instead.
func (c *pinCache) store(e *cachedUserPIN) {
	id := e.user.ID
	if i, pos, found := c.lookup(id); found {
		c.kill(i, pos)
	}
	rec, ok := c.encode(e)
	if !ok {
		return
	}
	for c.count >= c.limit && c.tail != c.head {
		c.evictOldest()
	}
	off := c.reserve(len(rec))
	copy(c.ring[off:], rec)
	clear(rec) // the scratch copy of a PIN hash or a seed goes too
	c.insert(c.hash(id), c.head-uint64(len(rec)))
	c.count++
}

// reserve makes room for n bytes at head, evicting the oldest records,
// and returns where they go in the ring; head then points past them.
func (c *pinCache) reserve(n int) int {
	size := uint64(len(c.ring))
	off := c.head % size
	need := uint64(n)
	if size-off < need {
		need += size - off // the rest of the ring goes unused
	}
	for c.head+need-c.tail > size && c.tail != c.head {
		c.evictOldest()
	}
	if size-off < uint64(n) {
		if size-off >= 4 {
			binary.LittleEndian.PutUint32(c.ring[off:], 0)
		}
		c.head += size - off
		off = 0
	}
	c.head += uint64(n)
	return int(off)
}

// evictOldest removes the record at tail (or skips the unused end of the
// ring), forgetting its user if it is live.
func (c *pinCache) evictOldest() {
	size := uint64(len(c.ring))
	off := c.tail % size
	if size-off < 4 {
		c.tail += size - off
		return
	}
	n := binary.LittleEndian.Uint32(c.ring[off:])
	if n == 0 {
		c.tail += size - off
		return
	}
	if c.ring[off+offLive] != 0 {
		i, pos, found := c.lookupBytes(c.recordUserID(c.tail))
		if found && pos == c.tail {
			c.kill(i, pos)
		}
	}
	c.tail += uint64(n)
}

// kill removes index slot i, whose record is at pos, and zeroes that
// record's fields.
func (c *pinCache) kill(i int, pos uint64) {
	c.remove(i)
	c.count--
	off := pos % uint64(len(c.ring))
	n := binary.LittleEndian.Uint32(c.ring[off:])
	clear(c.ring[off+offLive : off+uint64(n)])
}

func (c *pinCache) hash(id string) uint64 { return maphash.String(c.seed, id) }

// lookup finds the user's slot and record.
func (c *pinCache) lookup(userID string) (slot int, pos uint64, found bool) {
	return c.find(c.hash(userID), func(id []byte) bool { return string(id) == userID })
}

// lookupBytes is lookup for an id read from a record.
func (c *pinCache) lookupBytes(userID []byte) (slot int, pos uint64, found bool) {
	return c.find(maphash.Bytes(c.seed, userID), func(id []byte) bool { return bytes.Equal(id, userID) })
}

func (c *pinCache) find(h uint64, is func(id []byte) bool) (slot int, pos uint64, found bool) {
	mask := len(c.index) - 1
	for i := int(h) & mask; ; i = (i + 1) & mask {
		s := &c.index[i]
		if s.gen != c.gen {
			return i, 0, false
		}
		if s.hash == h && is(c.recordUserID(s.pos)) {
			return i, s.pos, true
		}
	}
}

// insert adds a slot for a user known to be absent.
func (c *pinCache) insert(h, pos uint64) {
	mask := len(c.index) - 1
	i := int(h) & mask
	for c.index[i].gen == c.gen {
		i = (i + 1) & mask
	}
	c.index[i] = indexSlot{hash: h, pos: pos, gen: c.gen}
}

// remove empties slot i, shifting back the slots after it that probed past
// it, so that every lookup still finds its slot before an empty one.
func (c *pinCache) remove(i int) {
	mask := len(c.index) - 1
	for j := (i + 1) & mask; c.index[j].gen == c.gen; j = (j + 1) & mask {
		home := int(c.index[j].hash) & mask
		// Slot j may move to i if its home is not in (i, j], cyclically.
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			c.index[i] = c.index[j]
			i = j
		}
	}
	c.index[i].gen = 0
}

// record returns the record at pos, in the ring.
func (c *pinCache) record(pos uint64) []byte {
	off := pos % uint64(len(c.ring))
	return c.ring[off : off+uint64(binary.LittleEndian.Uint32(c.ring[off:]))]
}

// recordUserID returns the user id of the record at pos, in the ring.
func (c *pinCache) recordUserID(pos uint64) []byte {
	rec := c.ring[pos%uint64(len(c.ring)):]
	n := int(binary.LittleEndian.Uint16(rec[offUserID:]))
	return rec[offUserID+2 : offUserID+2+n]
}

// pinID returns the id of the record's PIN, which it must have.
func (c *pinCache) pinID(rec []byte) []byte {
	r := reader{rec: rec, i: offUserID}
	r.skipUser()
	return r.field()
}

// appID returns the id of the record's app, which it must have.
func (c *pinCache) appID(rec []byte) []byte {
	r := reader{rec: rec, i: offUserID}
	r.skipUser()
	if rec[offFlags]&hasPIN != 0 {
		r.skipPIN(rec[offFlags])
	}
	return r.field()
}

func getInt(b []byte) int64    { return int64(binary.LittleEndian.Uint64(b)) }
func putInt(b []byte, n int64) { binary.LittleEndian.PutUint64(b, uint64(n)) }
func addInt(b []byte, n int64) { putInt(b, getInt(b)+n) }

// encode writes e as a record in c.scratch, or reports false when it does
// not fit in one.
func (c *pinCache) encode(e *cachedUserPIN) ([]byte, bool) {
	u, p, f := &e.user, e.pin, e.app
	if !e.appKnown {
		f = nil
	}
	var flags byte
	if p != nil {
		flags |= hasPIN
		if p.ConsumedAt != nil {
			flags |= pinConsumed
		}
	}
	if e.appKnown {
		flags |= appKnown
		if f != nil {
			flags |= hasApp
		}
	}
	b := append(c.scratch[:0], make([]byte, offUserID)...)
	b[offLive], b[offFlags] = 1, flags
	putInt(b[offSeq:], e.seq)
	putInt(b[offFailureCount:], int64(u.FailureCount))
	putInt(b[offFailureWindow:], micros(u.FailureWindowStart))
	// A field that would take the record past maxRecord is not written
	// (so neither a length nor the scratch space can grow past it): the
	// record is refused below.
	long := false
	fits := func(n int) bool { long = long || len(b)+2+n > maxRecord; return !long }
	str := func(s string) {
		if fits(len(s)) {
			b = append(binary.LittleEndian.AppendUint16(b, uint16(len(s))), s...)
		}
	}
	blob := func(s []byte) {
		if fits(len(s)) {
			b = append(binary.LittleEndian.AppendUint16(b, uint16(len(s))), s...)
		}
	}
	num := func(n int64) { b = binary.LittleEndian.AppendUint64(b, uint64(n)) }
	str(u.ID)
	str(u.ServiceID)
	str(u.IDInService)
	str(u.Phone)
	str(u.PhoneType)
	str(u.LastMethod)
	num(micros(u.CreatedAt))
	if p != nil {
		putInt(b[offPINAttempts:], int64(p.Attempts))
		str(p.ID)
		blob(p.Hash)
		num(micros(p.CreatedAt))
		num(micros(p.ExpiresAt))
		if p.ConsumedAt != nil {
			num(micros(*p.ConsumedAt))
		}
	}
	if f != nil {
		putInt(b[offAppLastStep:], f.LastStep)
		str(f.ID)
		str(f.Status)
		str(f.KeyID)
		blob(f.Secret)
		str(f.Algorithm)
		num(int64(f.Digits))
		num(int64(f.Period))
		num(micros(f.CreatedAt))
		num(micros(f.ActivatedAt))
	}
	c.scratch = b
	if long || len(b) > maxRecord || len(b) > len(c.ring)/4 {
		clear(b)
		return nil, false
	}
	binary.LittleEndian.PutUint32(b[offLength:], uint32(len(b)))
	return b, true
}

// reader walks a record's variable fields.
type reader struct {
	rec []byte
	i   int
}

func (r *reader) field() []byte {
	n := int(binary.LittleEndian.Uint16(r.rec[r.i:]))
	r.i += 2 + n
	return r.rec[r.i-n : r.i]
}

func (r *reader) num() int64 { r.i += 8; return getInt(r.rec[r.i-8:]) }

// skipUser passes the user's fields, from its id.
func (r *reader) skipUser() {
	for range 6 {
		r.field()
	}
	r.i += 8
}

// skipPIN passes the PIN's fields.
func (r *reader) skipPIN(flags byte) {
	r.field()
	r.field()
	r.i += 16
	if flags&pinConsumed != 0 {
		r.i += 8
	}
}

// decode reads the record at pos into new values: the user and its PIN,
// and with withApp the app. The record's user id must be userID (the
// caller found it by that id, and its string is reused); when serviceID is
// not empty, the record's must equal it, or ok is false.
func (c *pinCache) decode(pos uint64, userID, serviceID string, withApp bool) (e cachedUserPIN, ok bool) {
	rec := c.record(pos)
	r := reader{rec: rec, i: offUserID}
	flags := rec[offFlags]
	r.field() // the user id
	svc := r.field()
	if serviceID != "" && string(svc) != serviceID {
		return e, false
	}
	e.seq = getInt(rec[offSeq:])
	u := &e.user
	u.ID = userID
	u.ServiceID = serviceID
	if serviceID == "" {
		u.ServiceID = string(svc)
	}
	// The user's and the PIN's other strings are cut from one copy of the
	// part of the record that holds them, but for two of a few values.
	from := r.i
	to := from
	for range 4 {
		to += 2 + int(binary.LittleEndian.Uint16(rec[to:]))
	}
	to += 8 // created_at
	if flags&hasPIN != 0 {
		to += 2 + int(binary.LittleEndian.Uint16(rec[to:]))
	}
	part := string(rec[from:to])
	str := func() string {
		f := r.field()
		return part[r.i-from-len(f) : r.i-from]
	}
	u.IDInService = str()
	u.Phone = str()
	u.PhoneType = interned(r.field())
	u.LastMethod = interned(r.field())
	u.CreatedAt = fromMicros(r.num())
	u.FailureCount = int(getInt(rec[offFailureCount:]))
	u.FailureWindowStart = fromMicros(getInt(rec[offFailureWindow:]))
	if flags&hasPIN != 0 {
		p := &verity.PIN{UserID: userID}
		p.ID = str()
		p.Hash = bytes.Clone(r.field())
		p.CreatedAt = fromMicros(r.num())
		p.ExpiresAt = fromMicros(r.num())
		p.Attempts = int(getInt(rec[offPINAttempts:]))
		if flags&pinConsumed != 0 {
			at := fromMicros(r.num())
			p.ConsumedAt = &at
		}
		e.pin = p
	}
	e.appKnown = flags&appKnown != 0
	if withApp {
		e.app = c.decodeApp(rec, userID)
	}
	return e, true
}

// interned returns b as a string, without allocating for the phone types,
// last methods and app algorithms most users have.
func interned(b []byte) string {
	switch string(b) {
	case "":
		return ""
	case "MOBILE":
		return "MOBILE"
	case "FIXED_LINE_OR_MOBILE":
		return "FIXED_LINE_OR_MOBILE"
	case "FIXED_LINE":
		return "FIXED_LINE"
	case "UNKNOWN":
		return "UNKNOWN"
	case "sms":
		return "sms"
	case "totp":
		return "totp"
	case "SHA1":
		return "SHA1"
	case "SHA256":
		return "SHA256"
	case "SHA512":
		return "SHA512"
	}
	return string(b)
}

// decodeApp reads the app of the record rec, of user userID, into a new
// Factor, or returns nil when the record has none.
func (c *pinCache) decodeApp(rec []byte, userID string) *verity.Factor {
	flags := rec[offFlags]
	if flags&hasApp == 0 {
		return nil
	}
	r := reader{rec: rec, i: offUserID}
	r.skipUser()
	if flags&hasPIN != 0 {
		r.skipPIN(flags)
	}
	// The strings before the encrypted seed are cut from one copy of them.
	start, end := r.i, r.i
	for range 3 {
		end += 2 + int(binary.LittleEndian.Uint16(rec[end:]))
	}
	all := string(rec[start:end])
	str := func() string {
		f := r.field()
		return all[r.i-start-len(f) : r.i-start]
	}
	f := &verity.Factor{UserID: userID}
	f.ID = str()
	f.Status = str()
	f.KeyID = str()
	f.Secret = bytes.Clone(r.field())
	f.Algorithm = interned(r.field())
	f.Digits = int(r.num())
	f.Period = int(r.num())
	f.LastStep = getInt(rec[offAppLastStep:])
	f.CreatedAt = fromMicros(r.num())
	f.ActivatedAt = fromMicros(r.num())
	return f
}
