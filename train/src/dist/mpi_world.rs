//! The MPI side of [`super::World`]: rsmpi's collectives on `MPI_COMM_WORLD`, each one watched by
//! a timer so that a rank that stops answering ends the job with a message instead of a hang.

use super::Collectives;
use mpi::datatype::{Partition, PartitionMut};
use mpi::environment::Universe;
use mpi::topology::{Communicator, Process, SimpleCommunicator};
use mpi::traits::{CommunicatorCollectives, Root};
use mpi::{Count, Threading};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest element count one MPI call moves (its counts are C ints).
const CHUNK: usize = 1 << 28;

pub(super) struct MpiWorld {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    /// Ranks on this machine (for the default thread count).
    local_size: usize,
    watch: Arc<Watch>,
    // Dropped last: finalizes MPI.
    _universe: Universe,
}

/// What the watchdog thread reads: when the current collective started (ms since the epoch, 0
/// when none runs), which one, and the limit.
struct Watch {
    since_ms: AtomicU64,
    op: AtomicU64,
    timeout_ms: AtomicU64,
}

const OPS: [&str; 8] = [
    "",
    "broadcast",
    "all-gather",
    "all-to-all (gradient reduce-scatter)",
    "all-gather (gradients or weights)",
    "gather (optimizer state)",
    "scatter (optimizer state)",
    "barrier",
];

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Arms the watchdog for the collective `op` (an index into [`OPS`]) until dropped.
struct Guard<'a>(&'a Watch);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.0.since_ms.store(0, Ordering::SeqCst);
    }
}

impl MpiWorld {
    /// Initializes MPI (only the main thread calls it: `MPI_THREAD_FUNNELED`).
    pub(super) fn init() -> Result<MpiWorld, String> {
        let (universe, _) = mpi::initialize_with_threading(Threading::Funneled)
            .ok_or("MPI was already initialized")?;
        let world = universe.world();
        let local_size = world.split_shared(0).size() as usize;
        let watch = Arc::new(Watch {
            since_ms: AtomicU64::new(0),
            op: AtomicU64::new(0),
            timeout_ms: AtomicU64::new(0),
        });
        let w = MpiWorld {
            rank: world.rank() as usize,
            size: world.size() as usize,
            local_size,
            world,
            watch: watch.clone(),
            _universe: universe,
        };
        let rank = w.rank;
        std::thread::Builder::new()
            .name("mpi-watchdog".into())
            .spawn(move || watchdog(&watch, rank))
            .map_err(|e| format!("starting the MPI watchdog thread: {e}"))?;
        // A panic on one rank must end the job, not leave the others waiting in a collective.
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            hook(info);
            SimpleCommunicator::world().abort(101);
        }));
        Ok(w)
    }

    fn timed(&self, op: usize) -> Guard<'_> {
        self.watch.op.store(op as u64, Ordering::SeqCst);
        self.watch.since_ms.store(now_ms(), Ordering::SeqCst);
        Guard(&self.watch)
    }

    fn root(&self, rank: usize) -> Process<'_> {
        self.world.process_at_rank(rank as i32)
    }
}

/// Ends the process (so `mpirun` ends the job) when a collective has waited past the timeout.
fn watchdog(w: &Watch, rank: usize) {
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let (since, limit) = (
            w.since_ms.load(Ordering::SeqCst),
            w.timeout_ms.load(Ordering::SeqCst),
        );
        if since > 0 && limit > 0 && now_ms().saturating_sub(since) > limit {
            let op = OPS[w.op.load(Ordering::SeqCst) as usize % OPS.len()];
            eprintln!(
                "error: rank {rank}: no answer from the other ranks in {op} for {} s \
                 (distributed.timeout); stopping the job",
                limit / 1000
            );
            std::process::exit(1);
        }
    }
}

fn counts(c: &[usize]) -> (Vec<Count>, Vec<Count>) {
    let mut displs = Vec::with_capacity(c.len());
    let mut at = 0;
    for &n in c {
        displs.push(at as Count);
        at += n;
    }
    (c.iter().map(|&n| n as Count).collect(), displs)
}

impl Collectives for MpiWorld {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn local_size(&self) -> usize {
        self.local_size
    }
    fn set_timeout(&self, seconds: f64) {
        self.watch
            .timeout_ms
            .store((seconds * 1000.0) as u64, Ordering::SeqCst);
    }
    fn barrier(&self) {
        self.world.barrier();
    }
    fn broadcast_bytes(&self, root: usize, buf: &mut Vec<u8>) {
        let _g = self.timed(1);
        let mut len = buf.len() as u64;
        self.root(root).broadcast_into(&mut len);
        buf.resize(len as usize, 0);
        for chunk in buf.chunks_mut(CHUNK) {
            self.root(root).broadcast_into(chunk);
        }
    }
    fn broadcast_f32(&self, buf: &mut [f32]) {
        let _g = self.timed(1);
        for chunk in buf.chunks_mut(CHUNK) {
            self.root(0).broadcast_into(chunk);
        }
    }
    fn all_gather_f64(&self, mine: &[f64], out: &mut [f64], timed: bool) {
        let _g = timed.then(|| self.timed(2));
        self.world.all_gather_into(mine, out);
    }
    fn all_to_all_f32(&self, send: &[f32], send_at: &[usize], recv: &mut [f32], n: &[usize]) {
        let _g = self.timed(3);
        let (send_counts, _) = counts(n);
        let send_displs: Vec<Count> = send_at.iter().map(|&d| d as Count).collect();
        // Every rank receives its own part from each rank: counts equal to its own part.
        let mine = n[self.rank];
        let (recv_counts, recv_displs) = counts(&vec![mine; self.size]);
        let send = Partition::new(send, send_counts, send_displs);
        let mut recv = PartitionMut::new(recv, recv_counts, recv_displs);
        self.world.all_to_all_varcount_into(&send, &mut recv);
    }
    fn all_gather_f32(&self, mine: &[f32], out: &mut [f32], n: &[usize]) {
        let _g = self.timed(4);
        let (c, d) = counts(n);
        let mut recv = PartitionMut::new(out, c, d);
        self.world.all_gather_varcount_into(mine, &mut recv);
    }
    fn gather_f32(&self, mine: &[f32], out: &mut [f32], n: &[usize]) {
        let _g = self.timed(5);
        if self.rank == 0 {
            let (c, d) = counts(n);
            let mut recv = PartitionMut::new(out, c, d);
            self.root(0).gather_varcount_into_root(mine, &mut recv);
        } else {
            self.root(0).gather_varcount_into(mine);
        }
    }
    fn scatter_f32(&self, send: &[f32], n: &[usize], out: &mut [f32]) {
        let _g = self.timed(6);
        if self.rank == 0 {
            let (c, d) = counts(n);
            let send = Partition::new(send, c, d);
            self.root(0).scatter_varcount_into_root(&send, out);
        } else {
            self.root(0).scatter_varcount_into(out);
        }
    }
    fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}
