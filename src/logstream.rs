//! Fan-out of log events to `/v1/log/audit` and `/v1/log/error` subscribers.
//!
//! Publishing never blocks: each subscriber has a bounded queue, and an event that does not fit is
//! dropped for that subscriber and counted. A slow or stalled subscriber therefore never slows
//! request handling.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

/// Events buffered per subscriber before new ones are dropped.
pub const QUEUE: usize = 4096;

#[derive(Default)]
pub struct Hub {
    subscribers: Mutex<Vec<SyncSender<Arc<[u8]>>>>,
    /// Events delivered into at least one subscriber queue.
    pub published: AtomicU64,
    /// Events dropped because a subscriber's queue was full.
    pub dropped: AtomicU64,
    has_subscribers: std::sync::atomic::AtomicBool,
}

impl Hub {
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    /// Whether anyone listens (lets callers skip formatting events nobody reads).
    pub fn has_subscribers(&self) -> bool {
        self.has_subscribers.load(Ordering::Relaxed)
    }

    pub fn subscribe(&self) -> Receiver<Arc<[u8]>> {
        let (tx, rx) = sync_channel(QUEUE);
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.push(tx);
        self.has_subscribers.store(true, Ordering::Relaxed);
        rx
    }

    /// Sends one event (a complete line, `\n` included) to every subscriber.
    pub fn publish(&self, line: Arc<[u8]>) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        let mut delivered = false;
        subs.retain(|tx| match tx.try_send(line.clone()) {
            Ok(()) => {
                delivered = true;
                true
            }
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        });
        self.has_subscribers
            .store(!subs.is_empty(), Ordering::Relaxed);
        if delivered {
            self.published.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn subscriber_count(&self) -> usize {
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slow_subscriber_drops_instead_of_blocking() {
        let hub = Hub::new();
        let rx = hub.subscribe();
        for i in 0..QUEUE + 10 {
            hub.publish(Arc::from(format!("{i}\n").into_bytes()));
        }
        assert_eq!(hub.dropped.load(Ordering::Relaxed), 10);
        assert_eq!(&*rx.recv().unwrap(), b"0\n");
        drop(rx);
        hub.publish(Arc::from(&b"x\n"[..]));
        assert_eq!(hub.subscriber_count(), 0);
        assert!(!hub.has_subscribers());
    }
}
