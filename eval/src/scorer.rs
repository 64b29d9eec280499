//! A long-lived [`Evaluator`] for training loops: the worker threads, their fork servers and every
//! problem's prepared check stay up across calls, so each RL step pays only for running its
//! completions (`Evaluator::evaluate` starts and stops all of it per call).

use crate::evaluate::{EvalError, Evaluator, Plan, Verdict};
use crate::sandbox::Sandbox;
use anvil_data::problems::Problem;
use rayon::prelude::*;
use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};

/// A problem's prepared check, and what it was prepared from: a task id seen again with another
/// prompt or test is prepared again.
struct Prepared {
    fingerprint: u64,
    plan: Plan,
}

/// Scores batches of `(problem, completion)` pairs against the problems' tests, keeping the
/// sandboxed fork servers and the problems' converted checks between calls. Verdicts are those
/// of [`Evaluator::evaluate`] for the same samples.
pub struct Scorer {
    evaluator: Evaluator,
    /// Fork servers are children of these threads: they live as long as the scorer.
    pool: rayon::ThreadPool,
    prepared: Mutex<HashMap<String, Arc<Prepared>>>,
}

impl Drop for Scorer {
    fn drop(&mut self) {
        // Before the pool's threads go (fields drop after this).
        self.evaluator.shutdown_servers();
    }
}

fn fingerprint(p: &Problem) -> u64 {
    let mut h = DefaultHasher::new();
    (&p.prompt, &p.test).hash(&mut h);
    h.finish()
}

impl Scorer {
    /// `workers` sandboxed runs at once.
    pub fn new(sandbox: Sandbox, workers: usize) -> Result<Scorer, EvalError> {
        Scorer::from_evaluator(Evaluator::new(sandbox, workers)?)
    }

    pub fn from_evaluator(evaluator: Evaluator) -> Result<Scorer, EvalError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(evaluator.workers)
            .thread_name(|i| format!("anvil-scorer-{i}"))
            .build()
            .map_err(|e| EvalError::Config(e.to_string()))?;
        Ok(Scorer {
            evaluator,
            pool,
            prepared: Mutex::new(HashMap::new()),
        })
    }

    pub fn evaluator(&self) -> &Evaluator {
        &self.evaluator
    }

    /// Why runs start their own interpreter instead of forking from a server, if they do.
    pub fn fork_server_off(&self) -> Option<String> {
        self.evaluator.fork_server_off()
    }

    /// Problems whose check is prepared and kept.
    pub fn n_prepared(&self) -> usize {
        self.lock().len()
    }

    /// The verdict on each pair, in order.
    pub fn score(&self, batch: &[(&Problem, &str)]) -> Result<Vec<Verdict>, EvalError> {
        self.score_with_progress(batch, &indicatif::ProgressBar::hidden())
    }

    /// [`Self::score`], advancing `progress` by one per completion judged.
    pub fn score_with_progress(
        &self,
        batch: &[(&Problem, &str)],
        progress: &indicatif::ProgressBar,
    ) -> Result<Vec<Verdict>, EvalError> {
        let plans = self.prepare(batch)?;
        self.pool.install(|| {
            batch
                .par_iter()
                .zip(&plans)
                .map(|((p, completion), plan)| {
                    let v = self.evaluator.judge(p, &plan.plan, completion);
                    progress.inc(1);
                    v
                })
                .collect()
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Prepared>>> {
        self.prepared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Each pair's prepared check, preparing (in parallel) the problems not seen before.
    fn prepare(&self, batch: &[(&Problem, &str)]) -> Result<Vec<Arc<Prepared>>, EvalError> {
        let mut missing: Vec<(&Problem, u64)> = Vec::new();
        {
            let known = self.lock();
            for (p, _) in batch {
                let fp = fingerprint(p);
                let fresh = known.get(&p.task_id).is_some_and(|k| k.fingerprint == fp);
                if !fresh && !missing.iter().any(|(q, _)| q.task_id == p.task_id) {
                    missing.push((p, fp));
                }
            }
        }
        let new: Vec<(String, Prepared)> = self.pool.install(|| {
            missing
                .par_iter()
                .map(|(p, fp)| {
                    let plan = self.evaluator.plan(p)?;
                    Ok((
                        p.task_id.clone(),
                        Prepared {
                            fingerprint: *fp,
                            plan,
                        },
                    ))
                })
                .collect::<Result<_, EvalError>>()
        })?;
        let mut known = self.lock();
        for (id, prepared) in new {
            known.insert(id, Arc::new(prepared));
        }
        // Every pair's problem is known now; a pair whose task id came twice with different
        // problems in one batch gets the last one prepared, so look each up by fingerprint.
        batch
            .iter()
            .map(|(p, _)| match known.get(&p.task_id) {
                Some(k) if k.fingerprint == fingerprint(p) => Ok(k.clone()),
                _ => Err(EvalError::Config(format!(
                    "task_id `{}` comes with two different problems in one batch",
                    p.task_id
                ))),
            })
            .collect()
    }
}
