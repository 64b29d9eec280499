//! Data parallelism across processes on MPI (docs/distributed.md).
//!
//! A run started by `mpirun` or `srun` is one process per rank. Every rank holds the whole
//! model, reads its own rows of each global batch, and the gradients are summed across ranks
//! before the optimizer step that every rank takes alike — or, with ZeRO stage 1, each rank
//! updates only its shard of the parameters and keeps only that shard's AdamW moments
//! ([`DataParallel`]).
//!
//! Every sum across ranks is taken on the host in rank order, never left to MPI's reduction
//! algorithms: every rank gets the same bits, and two ranks add exactly what one process
//! accumulating their two micro-batches adds.

mod ddp;
#[cfg(feature = "mpi")]
mod mpi_world;

pub use ddp::{DataParallel, DistConfig, optimizer_step, scaled};

use crate::TrainError;
use std::rc::Rc;

/// The collectives a trainer needs; MPI implements them ([`mpi_world`]).
pub(crate) trait Collectives {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Ranks on this machine.
    fn local_size(&self) -> usize;
    /// Seconds a collective may wait for the other ranks before this rank ends the job.
    fn set_timeout(&self, seconds: f64);
    /// Waits for every rank, however long (setup: rank 0 may be building the data).
    fn barrier(&self);
    /// `root`'s bytes on every rank.
    fn broadcast_bytes(&self, root: usize, buf: &mut Vec<u8>);
    /// Rank 0's values on every rank.
    fn broadcast_f32(&self, buf: &mut [f32]);
    /// Every rank's `mine` (all the same length), concatenated in rank order.
    fn all_gather_f64(&self, mine: &[f64], out: &mut [f64], timed: bool);
    /// Sends `n[r]` values from `send[send_at[r]..]` to rank r; receives this rank's `n[rank]`
    /// values from every rank into `recv`, in rank order.
    fn all_to_all_f32(&self, send: &[f32], send_at: &[usize], recv: &mut [f32], n: &[usize]);
    /// Every rank's `mine` (`n[r]` values) concatenated into `out`.
    fn all_gather_f32(&self, mine: &[f32], out: &mut [f32], n: &[usize]);
    /// Every rank's `mine` concatenated into `out` on rank 0 (`out` unused elsewhere).
    fn gather_f32(&self, mine: &[f32], out: &mut [f32], n: &[usize]);
    /// Rank 0's `send`, cut into `n[r]` values per rank, into each rank's `out`.
    fn scatter_f32(&self, send: &[f32], n: &[usize], out: &mut [f32]);
    fn abort(&self, code: i32) -> !;
}

/// How `anvil train run --distributed` asks for the processes to be joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Launch {
    /// MPI when the environment shows an MPI launch, else one process.
    #[default]
    Auto,
    /// MPI, required.
    Mpi,
    /// One process, whatever the environment says.
    None,
}

/// The processes a run is made of: this one alone, or the ranks of an MPI job.
#[derive(Clone, Default)]
pub struct World {
    comm: Option<Rc<dyn Collectives>>,
    /// Set when [`World::agree`] returned an error: every rank has it and stops alike.
    failed_together: Rc<std::cell::Cell<bool>>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "World(rank {} of {})", self.rank(), self.size())
    }
}

/// Environment variables launchers set in every rank: (variable, launcher). Their presence, not
/// their value, marks a launch (`srun --mpi=pmix` sets only PMIx's).
const LAUNCH_VARS: [(&str, &str); 4] = [
    ("OMPI_COMM_WORLD_SIZE", "Open MPI's mpirun"),
    ("PMI_SIZE", "an MPICH/PMI launcher"),
    ("PMIX_RANK", "a PMIx launcher (srun --mpi=pmix)"),
    ("MPI_LOCALNRANKS", "MPICH's mpiexec"),
];

/// What `launch` and the environment (`var`) decide: `Ok(true)` for MPI, `Ok(false)` for one
/// process, or why neither works. `with_mpi`: whether this binary was built with MPI.
pub fn wants_mpi(
    launch: Launch,
    var: impl Fn(&str) -> Option<String>,
    with_mpi: bool,
) -> Result<bool, String> {
    let seen = LAUNCH_VARS.iter().find(|(v, _)| var(v).is_some());
    // A job of one process is an ordinary run.
    let one = var("OMPI_COMM_WORLD_SIZE")
        .or_else(|| var("PMI_SIZE"))
        .is_some_and(|n| n.trim() == "1");
    let mpi = match launch {
        Launch::None => false,
        Launch::Mpi => true,
        Launch::Auto => seen.is_some() && !one,
    };
    if mpi && !with_mpi {
        let why = match seen {
            Some((v, who)) => format!("it was started by {who} ({v} is set)"),
            None => "--distributed mpi was asked for".into(),
        };
        return Err(format!(
            "{why}, but this anvil was built without MPI: rebuild it with \
             `cargo build --release --features mpi` (needs openmpi-bin, libopenmpi-dev and \
             libclang-dev), or pass --distributed none for independent single-process runs"
        ));
    }
    Ok(mpi)
}

/// This process's rank as the launcher's environment says (0 when not launched by one): which
/// process of a job speaks when MPI itself is not available.
pub fn launch_rank() -> usize {
    ["OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.trim().parse().ok())
        .unwrap_or(0)
}

impl World {
    /// This process alone.
    pub fn single() -> World {
        World::default()
    }

    /// The world `launch` and this process's environment ask for (MPI is initialized here,
    /// and finalized when the last clone is dropped).
    pub fn from_env(launch: Launch) -> Result<World, String> {
        let mpi = wants_mpi(launch, |v| std::env::var(v).ok(), cfg!(feature = "mpi"))?;
        if !mpi {
            return Ok(World::single());
        }
        #[cfg(feature = "mpi")]
        {
            let w = mpi_world::MpiWorld::init()?;
            if w.size() == 1 {
                return Ok(World::single());
            }
            Ok(World {
                comm: Some(Rc::new(w)),
                failed_together: Rc::default(),
            })
        }
        #[cfg(not(feature = "mpi"))]
        unreachable!("wants_mpi refuses MPI without the feature")
    }

    pub fn rank(&self) -> usize {
        self.comm.as_ref().map_or(0, |c| c.rank())
    }

    pub fn size(&self) -> usize {
        self.comm.as_ref().map_or(1, |c| c.size())
    }

    pub fn is_root(&self) -> bool {
        self.rank() == 0
    }

    pub fn is_distributed(&self) -> bool {
        self.size() > 1
    }

    /// Tensor threads for `threads = 0`: the cores this process may use, shared with the other
    /// ranks on its machine unless the launcher already bound each rank to its own cores.
    pub fn default_threads(&self) -> Option<usize> {
        let c = self.comm.as_ref()?;
        let usable = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: sysconf only reads a system setting.
        let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize;
        Some(if usable < online {
            usable
        } else {
            (usable / c.local_size().max(1)).max(1)
        })
    }

    /// Whether the ranks stopped on an error they agreed on (so none has to abort the job).
    pub fn failed_together(&self) -> bool {
        self.failed_together.get()
    }

    pub(crate) fn comm(&self) -> Option<&dyn Collectives> {
        self.comm.as_deref()
    }

    pub fn set_timeout(&self, seconds: f64) {
        if let Some(c) = &self.comm {
            c.set_timeout(seconds);
        }
    }

    /// This rank's share of `n` items dealt out in contiguous blocks, in rank order (the first
    /// `n % size` ranks take one more).
    pub fn block(&self, n: usize) -> std::ops::Range<usize> {
        let (r, k) = (self.rank(), self.size());
        let (base, extra) = (n / k, n % k);
        let start = r * base + r.min(extra);
        start..start + base + usize::from(r < extra)
    }

    /// Waits (untimed) for every rank.
    pub fn barrier(&self) {
        if let Some(c) = &self.comm {
            c.barrier();
        }
    }

    /// Ends every rank of the job at once (after a rank's error that the others cannot know of).
    pub fn abort(&self, code: i32) -> ! {
        match &self.comm {
            Some(c) => c.abort(code),
            None => std::process::exit(code),
        }
    }

    /// Every rank's `mine`, in rank order.
    fn gather_all(&self, mine: &[f64], timed: bool) -> Vec<Vec<f64>> {
        let Some(c) = &self.comm else {
            return vec![mine.to_vec()];
        };
        if mine.is_empty() {
            return vec![Vec::new(); c.size()];
        }
        let mut out = vec![0.0; mine.len() * c.size()];
        c.all_gather_f64(mine, &mut out, timed);
        out.chunks(mine.len().max(1))
            .map(<[f64]>::to_vec)
            .take(c.size())
            .collect()
    }

    /// Every rank's `mine` (the same length on every rank), in rank order.
    pub fn all_gather(&self, mine: &[f64]) -> Vec<Vec<f64>> {
        self.gather_all(mine, true)
    }

    /// Whether `flag` holds on any rank.
    pub fn any(&self, flag: bool) -> bool {
        match self.comm {
            None => flag,
            Some(_) => self.sum(&[f64::from(u8::from(flag))])[0] > 0.0,
        }
    }

    /// Element-wise sums of every rank's `mine`, added in rank order (the same bits everywhere).
    pub fn sum(&self, mine: &[f64]) -> Vec<f64> {
        let all = self.gather_all(mine, true);
        let mut out = all[0].clone();
        for other in &all[1..] {
            for (o, x) in out.iter_mut().zip(other) {
                *o += x;
            }
        }
        out
    }

    /// Rank 0's bytes on every rank.
    pub fn broadcast_bytes(&self, bytes: Vec<u8>) -> Vec<u8> {
        self.broadcast_bytes_from(0, bytes)
    }

    fn broadcast_bytes_from(&self, root: usize, mut bytes: Vec<u8>) -> Vec<u8> {
        if let Some(c) = &self.comm {
            c.broadcast_bytes(root, &mut bytes);
        }
        bytes
    }

    /// Rank 0's value of `x` on every rank (through JSON).
    pub fn broadcast_json<T: serde::Serialize + serde::de::DeserializeOwned>(&self, x: T) -> T {
        if self.comm.is_none() {
            return x;
        }
        let bytes = if self.is_root() {
            serde_json::to_vec(&x).expect("serializable")
        } else {
            Vec::new()
        };
        let got = self.broadcast_bytes(bytes);
        if self.is_root() {
            x
        } else {
            serde_json::from_slice(&got).expect("rank 0 sent what it serialized")
        }
    }

    /// Makes every rank return the same outcome: `Ok` where every rank succeeded, else the error
    /// of the lowest failing rank, on every rank (so all of them stop alike and only rank 0 needs
    /// to print it). Setup phases end with it.
    pub fn agree<T>(&self, r: Result<T, TrainError>) -> Result<T, TrainError> {
        self.agree_after(r, true)
    }

    /// [`World::agree`] with no timeout: for the phase where rank 0 may build the data for
    /// hours while the others wait.
    pub fn agree_untimed<T>(&self, r: Result<T, TrainError>) -> Result<T, TrainError> {
        self.agree_after(r, false)
    }

    fn agree_after<T>(&self, r: Result<T, TrainError>, timed: bool) -> Result<T, TrainError> {
        if self.comm.is_none() {
            return r;
        }
        let failed = self.gather_all(&[r.is_err() as u8 as f64], timed);
        let Some(first) = failed.iter().position(|f| f[0] > 0.0) else {
            return r;
        };
        self.failed_together.set(true);
        let mine = match (&r, first == self.rank()) {
            // The one error that is not a failure (`--resume` of a finished run) stays itself.
            (Err(TrainError::AlreadyFinished { step }), true) => format!("\0{step}").into_bytes(),
            (Err(e), true) => e.to_string().into_bytes(),
            _ => Vec::new(),
        };
        let msg = String::from_utf8_lossy(&self.broadcast_bytes_from(first, mine)).into_owned();
        if let Some(step) = msg.strip_prefix('\0').and_then(|s| s.parse().ok()) {
            return Err(TrainError::AlreadyFinished { step });
        }
        match r {
            Err(e) if first == self.rank() && first == 0 => Err(e),
            _ if first == 0 => Err(TrainError::Recipe(msg)),
            _ => Err(TrainError::Recipe(format!("rank {first}: {msg}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(v, _)| *v == k)
                .map(|(_, x)| x.to_string())
        }
    }

    #[test]
    fn an_mpi_launch_is_detected_and_refused_without_the_feature() {
        let launched = [("OMPI_COMM_WORLD_SIZE", "2"), ("OMPI_COMM_WORLD_RANK", "1")];
        assert_eq!(wants_mpi(Launch::Auto, env(&launched), true), Ok(true));
        let e = wants_mpi(Launch::Auto, env(&launched), false).unwrap_err();
        assert!(
            e.contains("Open MPI's mpirun (OMPI_COMM_WORLD_SIZE is set)"),
            "{e}"
        );
        assert!(e.contains("--features mpi"), "{e}");
        assert!(!e.contains('\n'));
        // Slurm with PMIx sets only PMIx's variables.
        assert_eq!(
            wants_mpi(Launch::Auto, env(&[("PMIX_RANK", "0")]), true),
            Ok(true)
        );
        // A plain run, a job of one, and an explicit `none` are single processes.
        assert_eq!(wants_mpi(Launch::Auto, env(&[]), false), Ok(false));
        let one = [("OMPI_COMM_WORLD_SIZE", "1")];
        assert_eq!(wants_mpi(Launch::Auto, env(&one), false), Ok(false));
        assert_eq!(wants_mpi(Launch::None, env(&launched), false), Ok(false));
        let e = wants_mpi(Launch::Mpi, env(&[]), false).unwrap_err();
        assert!(e.starts_with("--distributed mpi was asked for"), "{e}");
    }

    #[test]
    fn one_process_is_a_world_of_one() {
        let w = World::single();
        assert_eq!((w.rank(), w.size(), w.is_root()), (0, 1, true));
        assert_eq!(w.sum(&[1.5, 2.0]), vec![1.5, 2.0]);
        assert_eq!(w.broadcast_json(7u32), 7);
        assert!(w.agree(Ok::<_, TrainError>(3)).is_ok());
        assert_eq!(w.default_threads(), None);
        assert_eq!(w.block(5), 0..5);
    }
}
