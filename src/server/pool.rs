//! The worker pool: a bounded set of threads for the handlers that may block (keystore and Vault
//! calls, which can take up to the keystore's timeouts).
//!
//! The event loops never wait for a worker: they queue a job and go on serving other connections
//! and other streams; the job hands its reply back to the loop that owns the connection. Threads
//! are started on demand, up to `server.workers`, and kept. How many jobs one connection may have
//! here at once is bounded by the connection (see [`super::conn`]), so one client cannot take
//! every worker.
//!
//! A panicking job never takes its worker down: the panic is caught, and the job's own drop guard
//! answers the request (500).

use super::Stats;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};

/// Stack size of worker threads: handlers need little stack.
const WORKER_STACK: usize = 256 * 1024;

/// Work for a worker: runs a handler and delivers its reply.
pub type Job = Box<dyn FnOnce() + Send>;

pub struct Pool {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    ready: Condvar,
    max: usize,
    stats: Arc<Stats>,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Threads waiting for a job.
    idle: usize,
    threads: usize,
}

impl Pool {
    pub fn new(max: usize, stats: Arc<Stats>) -> Pool {
        Pool {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                ready: Condvar::new(),
                max: max.max(1),
                stats,
            }),
        }
    }

    /// Queues a job; a worker runs it as soon as one is free.
    pub fn submit(&self, job: Job) {
        let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        state.jobs.push_back(job);
        self.shared
            .stats
            .queued
            .store(state.jobs.len(), Ordering::Relaxed);
        if state.idle > 0 {
            drop(state);
            self.shared.ready.notify_one();
            return;
        }
        if state.threads >= self.shared.max {
            return;
        }
        state.threads += 1;
        let n = state.threads;
        drop(state);
        self.shared.stats.workers.fetch_add(1, Ordering::Relaxed);
        let shared = self.shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("kes-worker-{n}"))
            .stack_size(WORKER_STACK)
            .spawn(move || work(&shared));
        if let Err(e) = spawned {
            self.shared.stats.workers.fetch_sub(1, Ordering::Relaxed);
            let mut state = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            state.threads -= 1;
            let stranded = state.threads == 0;
            let job = if stranded {
                state.jobs.pop_back()
            } else {
                None
            };
            drop(state);
            log::error!("cannot start a worker thread: {e}");
            // With no worker at all the job would wait forever: run it here rather than lose
            // the request (the thread that submits is an event loop, so this is a last resort).
            if let Some(job) = job {
                run(&self.shared, job);
            }
        }
    }
}

/// How much lower than the event loops workers run (see [`crate::sys::lower_thread_priority`]).
const WORKER_NICENESS: i32 = 5;

fn work(shared: &Shared) {
    if let Err(e) = crate::sys::lower_thread_priority(WORKER_NICENESS) {
        log::debug!("cannot lower the priority of a worker thread: {e}");
    }
    loop {
        let job = {
            let mut state = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(job) = state.jobs.pop_front() {
                    shared
                        .stats
                        .queued
                        .store(state.jobs.len(), Ordering::Relaxed);
                    break job;
                }
                state.idle += 1;
                state = shared.ready.wait(state).unwrap_or_else(|e| e.into_inner());
                state.idle -= 1;
            }
        };
        run(shared, job);
    }
}

fn run(shared: &Shared, job: Job) {
    shared.stats.busy.fetch_add(1, Ordering::AcqRel);
    // The job answers its request from a drop guard if it panics.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    shared.stats.busy.fetch_sub(1, Ordering::AcqRel);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    #[test]
    fn runs_jobs_concurrently_up_to_its_size() {
        let stats = Arc::new(Stats::default());
        let pool = Pool::new(4, stats.clone());
        let gate = Arc::new(std::sync::Barrier::new(5));
        let (tx, rx) = mpsc::channel();
        for i in 0..4 {
            let gate = gate.clone();
            let tx = tx.clone();
            pool.submit(Box::new(move || {
                gate.wait();
                tx.send(i).unwrap();
            }));
        }
        // All four run at once (the barrier needs every one of them), and a fifth waits.
        let tx5 = tx.clone();
        pool.submit(Box::new(move || tx5.send(99).unwrap()));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(stats.workers.load(Ordering::Relaxed), 4);
        assert_eq!(stats.queued.load(Ordering::Relaxed), 1);
        gate.wait();
        let mut got: Vec<i32> = (0..5)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap())
            .collect();
        got.sort();
        assert_eq!(got, vec![0, 1, 2, 3, 99]);
    }

    #[test]
    fn a_panicking_job_leaves_the_worker_alive() {
        let stats = Arc::new(Stats::default());
        let pool = Pool::new(1, stats.clone());
        pool.submit(Box::new(|| panic!("test panic in a job")));
        let (tx, rx) = mpsc::channel();
        pool.submit(Box::new(move || tx.send(1).unwrap()));
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 1);
        assert_eq!(stats.workers.load(Ordering::Relaxed), 1);
        // The job has sent; the worker marks itself free right after.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while stats.busy.load(Ordering::Relaxed) != 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(stats.busy.load(Ordering::Relaxed), 0);
    }
}
