//! An output's memory queue: batches handed over by the event loop and
//! taken by the output's delivery thread, bounded in bytes. The event loop
//! never waits on it: a batch that does not fit is refused at once (and
//! counted dropped by the caller).

use std::{
    collections::VecDeque,
    sync::{Condvar, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use crate::output::sink::Batch;

pub struct Queue {
    state: Mutex<State>,
    /// A batch arrived, or the queue closed.
    arrived: Condvar,
    /// The thread finished what it had taken and the queue is empty.
    settled: Condvar,
    cap: u64,
}

#[derive(Default)]
struct State {
    batches: VecDeque<Batch>,
    bytes: u64,
    records: u64,
    closed: bool,
    /// The thread holds a batch it took and has not finished with.
    busy: bool,
    /// The thread sleeps on `arrived`: a push must wake it (otherwise it
    /// will see the batch when it next looks, and no wake-up is spent).
    waiting: bool,
}

pub enum Pop {
    Batch(Batch),
    /// Nothing arrived in the time given.
    Empty,
    /// Closed and empty: the thread's work is done.
    Closed,
}

impl Queue {
    pub fn new(cap: u64) -> Self {
        Self {
            state: Mutex::new(State::default()),
            arrived: Condvar::new(),
            settled: Condvar::new(),
            cap,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A thread that panicked while holding the lock left the state
        // consistent (every change is a single push or pop).
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `batch`, or hands it back when it would take the queue past
    /// its cap (an empty queue takes any one batch).
    pub fn push(&self, batch: Batch) -> Result<(), Batch> {
        let mut state = self.lock();
        let size = batch.bytes.len() as u64;
        if state.closed || (!state.batches.is_empty() && state.bytes + size > self.cap) {
            return Err(batch);
        }
        state.bytes += size;
        state.records += batch.records() as u64;
        state.batches.push_back(batch);
        if state.waiting {
            self.arrived.notify_one();
        }
        Ok(())
    }

    /// The next batch, waiting up to `wait` for one. The thread is busy
    /// with it until its next [`Queue::pop`] or [`Queue::idle`].
    pub fn pop(&self, wait: Duration) -> Pop {
        let deadline = Instant::now() + wait;
        let mut state = self.lock();
        state.busy = false;
        loop {
            if let Some(batch) = Self::take(&mut state) {
                state.busy = true;
                return Pop::Batch(batch);
            }
            self.settled.notify_all();
            if state.closed {
                return Pop::Closed;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Pop::Empty;
            }
            state.waiting = true;
            state = self
                .arrived
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            state.waiting = false;
        }
    }

    /// Every batch queued now, without waiting (the thread is busy with
    /// them as with a popped one).
    pub fn take_all(&self) -> Vec<Batch> {
        let mut state = self.lock();
        let mut all = Vec::new();
        while let Some(batch) = Self::take(&mut state) {
            all.push(batch);
        }
        if !all.is_empty() {
            state.busy = true;
        }
        all
    }

    fn take(state: &mut State) -> Option<Batch> {
        let batch = state.batches.pop_front()?;
        state.bytes -= batch.bytes.len() as u64;
        state.records -= batch.records() as u64;
        Some(batch)
    }

    /// The thread finished with what it took.
    pub fn idle(&self) {
        let mut state = self.lock();
        state.busy = false;
        if state.batches.is_empty() {
            self.settled.notify_all();
        }
    }

    /// Waits until every queued batch has been handled, or `deadline`.
    pub fn settle(&self, deadline: Instant) {
        let mut state = self.lock();
        while state.busy || !state.batches.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = self
                .settled
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// No more batches; the thread finishes what is queued and stops.
    pub fn close(&self) {
        self.lock().closed = true;
        self.arrived.notify_all();
    }

    /// Closed: the agent is stopping.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Records and bytes waiting.
    pub fn depth(&self) -> (u64, u64) {
        let state = self.lock();
        (state.records, state.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(bytes: usize) -> Batch {
        let mut b = Batch::default();
        b.push(&vec![b'x'; bytes]);
        b
    }

    #[test]
    fn a_full_queue_refuses_without_waiting_and_keeps_order() {
        let q = Queue::new(100);
        assert!(q.push(batch(60)).is_ok());
        assert!(q.push(batch(40)).is_ok());
        assert!(q.push(batch(1)).is_err());
        assert_eq!(q.depth(), (2, 100));
        let Pop::Batch(first) = q.pop(Duration::ZERO) else {
            panic!("a batch")
        };
        assert_eq!(first.bytes.len(), 60);
        q.close();
        assert!(matches!(q.pop(Duration::ZERO), Pop::Batch(_)));
        assert!(matches!(q.pop(Duration::ZERO), Pop::Closed));
        // An empty queue takes a batch larger than its cap.
        let q = Queue::new(10);
        assert!(q.push(batch(50)).is_ok());
    }

    #[test]
    fn settle_waits_for_the_thread_to_finish_its_batch() {
        let q = std::sync::Arc::new(Queue::new(1 << 20));
        q.push(batch(10)).expect("push");
        let worker = {
            let q = q.clone();
            std::thread::spawn(move || {
                let Pop::Batch(_) = q.pop(Duration::from_secs(5)) else {
                    panic!("a batch")
                };
                std::thread::sleep(Duration::from_millis(200));
                q.idle();
            })
        };
        let start = Instant::now();
        std::thread::sleep(Duration::from_millis(50));
        q.settle(Instant::now() + Duration::from_secs(5));
        assert!(start.elapsed() >= Duration::from_millis(200));
        worker.join().expect("join");
    }
}
