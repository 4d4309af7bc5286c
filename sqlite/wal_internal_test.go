package sqlite

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// continuousWrites keeps db's writer busy without a pause, from enough
// goroutines that one is always queued while a batch commits, until the
// returned stop function is called; stop reports how many writes committed.
func continuousWrites(t *testing.T, db *DB) (stop func() int) {
	t.Helper()
	ctx := context.Background()
	if _, err := db.writer.ExecContext(ctx, "CREATE TABLE scratch (id INTEGER PRIMARY KEY, v BLOB NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	var writes [8]int
	errs := make([]error, len(writes))
	for w := range writes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			blob := make([]byte, 512)
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				// A row rewritten with the same bytes dirties no page, so
				// each write changes its row.
				id := w*1000 + i%1000
				binary.BigEndian.PutUint64(blob, uint64(i))
				err := db.q.writeStatement(ctx, func(tx *wtx) error {
					_, err := tx.Exec("INSERT INTO scratch (id, v) VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET v = excluded.v", id, blob)
					return err
				})
				if err != nil {
					errs[w] = err
					return
				}
				writes[w]++
			}
		}()
	}
	return func() int {
		t.Helper()
		close(done)
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		total := 0
		for _, n := range writes {
			total += n
		}
		return total
	}
}

// walSequence reads the WAL header's checkpoint sequence number (bytes
// 12-15), which SQLite raises each time the WAL starts over.
func walSequence(t *testing.T, path string) uint32 {
	t.Helper()
	f, err := os.Open(path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // a plain read: SQLite holds no lock on the WAL file itself
	var hdr [16]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		t.Fatal(err)
	}
	return binary.BigEndian.Uint32(hdr[12:])
}

// TestWALRestartsUnderContinuousWrites keeps the writer busy without a
// pause and checks that the WAL still starts over from its beginning. A
// checkpoint running beside the writer never catches up with it: frames
// keep arriving while it copies, the WAL is never wholly copied back, so it
// never restarts and grows by every commit for as long as the load lasts
// (a gigabyte in a minute of the check benchmark), and every commit pays
// for growing the file. The checkpoint the writer runs between two batches
// lets it restart: at every tick with SyncFull, and with SyncNormal once
// the WAL holds walRestartFrames, here 64 frames, reached within a tick.
func TestWALRestartsUnderContinuousWrites(t *testing.T) {
	for _, sync := range []Sync{SyncFull, SyncNormal} {
		t.Run(string(sync), func(t *testing.T) {
			// Without the writer's own checkpoint the WAL restarts only when
			// a checkpoint beside the writer happens to finish between two
			// commits: on this disk, whose syncs make it slower than the
			// writer's gaps, that was never seen.
			before, restarts := int64(-1), int64(0)
			_, total := writeUntil(t, Options{Sync: sync, walRestartFrames: 64}, func(db *DB) bool {
				seq := int64(walSequence(t, db.path)) // the WAL exists: continuousWrites has written
				if before < 0 {
					before = seq
				}
				restarts = seq - before
				return restarts >= 2
			})
			if restarts < 2 {
				t.Fatalf("the WAL restarted %d times in %v of continuous writes (%d of them), want at least 2",
					restarts, 50*checkpointInterval, total)
			}
			t.Logf("2 restarts in %d writes", total)
		})
	}
}

// writeUntil opens a store with opts, keeps its writer busy with
// continuousWrites until done holds or 50 checkpoint ticks have passed, and
// returns the store, still open, and how many writes committed.
func writeUntil(t *testing.T, opts Options, done func(*DB) bool) (*DB, int) {
	t.Helper()
	db, err := OpenWith(filepath.Join(t.TempDir(), "v.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	stop := continuousWrites(t, db)
	deadline := time.Now().Add(50 * checkpointInterval)
	for !done(db) && time.Now().Before(deadline) {
		time.Sleep(checkpointInterval / 5)
	}
	return db, stop()
}

// TestNormalSyncCheckpointsWaitForAFullWAL checks that with SyncNormal,
// under continuous writes, the checkpointer leaves the writer alone while
// the WAL holds fewer than walRestartFrames frames (a writer checkpoint
// holds every write), and that it syncs the database beside the writer
// after copying into it, so that the writer's checkpoint, when it comes,
// has little left to sync.
func TestNormalSyncCheckpointsWaitForAFullWAL(t *testing.T) {
	db, total := writeUntil(t, Options{Sync: SyncNormal, walRestartFrames: 1 << 40},
		func(db *DB) bool { return db.fileSyncs.Load() >= 3 })
	if n := db.fileSyncs.Load(); n < 3 {
		t.Fatalf("the checkpointer synced the database %d times in %v of continuous writes (%d of them), want at least 3",
			n, 50*checkpointInterval, total)
	}
	if n := db.writerCheckpoints.Load(); n != 0 {
		t.Fatalf("the writer ran %d checkpoints with the WAL far below its bound, want none", n)
	}
}

// TestFullSyncCheckpointsOnTheWriter checks that with SyncFull the writer
// runs its checkpoint at every tick, as small as it comes, and nothing
// syncs the database beside it: there every commit waits for its own sync,
// and one of the database beside it made those slower (see checkpoint).
func TestFullSyncCheckpointsOnTheWriter(t *testing.T) {
	db, total := writeUntil(t, Options{Sync: SyncFull, walRestartFrames: 1 << 40},
		func(db *DB) bool { return db.writerCheckpoints.Load() >= 3 })
	if n := db.writerCheckpoints.Load(); n < 3 {
		t.Fatalf("the writer ran %d checkpoints in %v of continuous writes (%d of them), want at least 3",
			n, 50*checkpointInterval, total)
	}
	if n := db.fileSyncs.Load(); n != 0 || db.file != nil {
		t.Fatalf("with SyncFull the checkpointer synced the database %d times beside the writer (own descriptor: %v), want none",
			n, db.file != nil)
	}
}

// lockedBuffer is a bytes.Buffer a logger may write to from another goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestFailingCheckpointsAreLoggedOnce breaks the connection pool the
// checkpoints run on: the failure must reach the log, once for the whole
// run of failing ticks rather than ten times a second.
func TestFailingCheckpointsAreLoggedOnce(t *testing.T) {
	var logged lockedBuffer
	db, err := OpenWith(filepath.Join(t.TempDir(), "v.db"), Options{Log: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.writer.Close() // the background checkpoint's pool; Close tolerates a second close

	const warning = "sqlite checkpoint failed"
	deadline := time.Now().Add(50 * checkpointInterval)
	for !strings.Contains(logged.String(), warning) && time.Now().Before(deadline) {
		time.Sleep(checkpointInterval / 2)
	}
	time.Sleep(5 * checkpointInterval) // five more failing ticks
	if n := strings.Count(logged.String(), warning); n != 1 {
		t.Fatalf("the warning was logged %d times, want once; the log:\n%s", n, logged.String())
	}
	// The writer's own checkpoint still runs and bounds the WAL.
	if db.writerCheckpoints.Load() == 0 {
		t.Fatal("no writer checkpoint ran while the checkpoints beside the writer failed")
	}
}
