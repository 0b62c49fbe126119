//! Hands out "tickets" (permission to send one request) to the connections of
//! one event-loop thread: as fast as they ask in closed-loop mode, or one per
//! slot of a fixed-rate schedule in open-loop mode.
//!
//! In fixed-rate mode a free connection takes the next slot and waits for its
//! time; a slot whose time has already passed (every connection was busy) is
//! sent at once and its latency counts from the slot's time, so a server
//! stall shows up as latency instead of silently lowering the send rate
//! (no coordinated omission).

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Permission to send one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    /// Fixed rate: when the request should be sent. Closed loop: `None`.
    pub at: Option<Instant>,
    /// False for warmup requests (not in the results).
    pub measured: bool,
}

#[derive(Debug, Clone, Copy)]
struct Rate {
    /// Offset of slot 0 from `t0`, ns.
    phase_ns: f64,
    /// Time between slots, ns.
    interval_ns: f64,
}

/// One thread's ticket dispenser (not shared across threads: no atomics on the hot path).
#[derive(Debug)]
pub struct Dispenser {
    t0: Instant,
    warmup_end: Instant,
    deadline: Instant,
    limit: Option<u64>,
    rate: Option<Rate>,
    stop: Arc<AtomicBool>,
    next_slot: Cell<u64>,
    measured_issued: Cell<u64>,
    /// When the dispenser ran dry; for the unsent count.
    ended_at: Cell<Option<Instant>>,
}

impl Dispenser {
    /// `limit`: measured requests this thread may send. `rate`: this thread's
    /// share of the total rate in requests/s, `phase`: offset of its first slot.
    pub fn new(
        t0: Instant,
        warmup: Duration,
        run: Duration,
        limit: Option<u64>,
        rate: Option<(f64, Duration)>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let warmup_end = t0 + warmup;
        Dispenser {
            t0,
            warmup_end,
            deadline: warmup_end + run,
            limit,
            rate: rate.map(|(r, phase)| Rate {
                phase_ns: phase.as_nanos() as f64,
                interval_ns: 1e9 / r,
            }),
            stop,
            next_slot: Cell::new(0),
            measured_issued: Cell::new(0),
            ended_at: Cell::new(None),
        }
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn warmup_end(&self) -> Instant {
        self.warmup_end
    }

    fn slot_time(&self, rate: Rate, i: u64) -> Instant {
        self.t0 + Duration::from_nanos((rate.phase_ns + i as f64 * rate.interval_ns) as u64)
    }

    fn finish(&self, at: Instant) -> Option<Ticket> {
        if self.ended_at.get().is_none() {
            self.ended_at.set(Some(at.min(self.deadline)));
        }
        None
    }

    /// The next ticket, or `None` when the run is over for this thread.
    pub fn take(&self, now: Instant) -> Option<Ticket> {
        if self.ended_at.get().is_some() {
            return None;
        }
        if self.stop.load(Ordering::Relaxed) {
            return self.finish(now);
        }
        if now >= self.deadline {
            return self.finish(self.deadline);
        }
        let (at, measured) = match self.rate {
            None => (None, now >= self.warmup_end),
            Some(rate) => {
                let at = self.slot_time(rate, self.next_slot.get());
                if at >= self.deadline {
                    return self.finish(self.deadline);
                }
                (Some(at), at >= self.warmup_end)
            }
        };
        if measured
            && let Some(limit) = self.limit
            && self.measured_issued.get() >= limit
        {
            return self.finish(now);
        }
        if measured {
            self.measured_issued.set(self.measured_issued.get() + 1);
        }
        self.next_slot.set(self.next_slot.get() + 1);
        Some(Ticket { at, measured })
    }

    /// True once `take` will only return `None` (run over or stopped).
    pub fn stopped(&self) -> bool {
        self.ended_at.get().is_some() || self.stop.load(Ordering::Relaxed)
    }

    /// True once the user asked to stop (Ctrl-C): slots already handed out are dropped.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Gives back a ticket that will not be used (the run was stopped while waiting for it).
    pub fn abandon(&self, t: Ticket) {
        if t.measured {
            self.measured_issued
                .set(self.measured_issued.get().saturating_sub(1));
        }
    }

    /// Measured tickets handed out.
    pub fn measured_issued(&self) -> u64 {
        self.measured_issued.get()
    }

    /// Fixed rate: measured slots due before the run ended that were never handed out.
    pub fn unsent(&self) -> u64 {
        let Some(rate) = self.rate else { return 0 };
        let end = self.ended_at.get().unwrap_or(self.deadline);
        let slots_before = |t: Instant| -> u64 {
            let span = t.saturating_duration_since(self.t0).as_nanos() as f64 - rate.phase_ns;
            if span <= 0.0 {
                0
            } else {
                (span / rate.interval_ns).ceil() as u64
            }
        };
        let mut due = slots_before(end).saturating_sub(slots_before(self.warmup_end));
        if let Some(limit) = self.limit {
            due = due.min(limit);
        }
        due.saturating_sub(self.measured_issued.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stop() -> Arc<AtomicBool> {
        Arc::new(AtomicBool::new(false))
    }

    #[test]
    fn fixed_rate_slots() {
        let t0 = Instant::now();
        let d = Dispenser::new(
            t0,
            Duration::ZERO,
            Duration::from_secs(1),
            None,
            Some((200.0, Duration::ZERO)),
            stop(),
        );
        let mut times = Vec::new();
        while let Some(t) = d.take(t0) {
            times.push(t.at.expect("scheduled"));
            assert!(t.measured);
        }
        assert_eq!(times.len(), 200);
        assert_eq!(times[0], t0);
        for w in times.windows(2) {
            let gap = w[1] - w[0];
            assert!(
                gap >= Duration::from_micros(4999) && gap <= Duration::from_micros(5001),
                "{gap:?}"
            );
        }
        assert_eq!(d.unsent(), 0);
        assert_eq!(d.measured_issued(), 200);
    }

    #[test]
    fn fixed_rate_warmup_limit_and_phase() {
        let t0 = Instant::now();
        let d = Dispenser::new(
            t0,
            Duration::from_millis(100),
            Duration::from_secs(1),
            Some(50),
            Some((100.0, Duration::from_millis(5))),
            stop(),
        );
        let tickets: Vec<Ticket> = std::iter::from_fn(|| d.take(t0)).collect();
        let warm = tickets.iter().filter(|t| !t.measured).count();
        // Slots at 5, 15, ..., 95 ms are warmup; then 50 measured.
        assert_eq!(warm, 10);
        assert_eq!(tickets.len(), 60);
        assert_eq!(tickets[0].at, Some(t0 + Duration::from_millis(5)));
        assert_eq!(d.unsent(), 0);
    }

    #[test]
    fn deadline_leaves_unsent_slots() {
        let t0 = Instant::now();
        let d = Dispenser::new(
            t0,
            Duration::ZERO,
            Duration::from_secs(1),
            None,
            Some((100.0, Duration::ZERO)),
            stop(),
        );
        // The connections only managed 30 sends, then the run was over.
        for _ in 0..30 {
            assert!(d.take(t0).is_some());
        }
        assert!(d.take(t0 + Duration::from_secs(1)).is_none());
        assert_eq!(d.unsent(), 70);
    }

    #[test]
    fn closed_loop_limit_warmup_and_stop() {
        let t0 = Instant::now();
        let s = stop();
        let d = Dispenser::new(
            t0,
            Duration::from_millis(10),
            Duration::from_secs(5),
            Some(3),
            None,
            s.clone(),
        );
        assert_eq!(
            d.take(t0),
            Some(Ticket {
                at: None,
                measured: false
            })
        );
        assert_eq!(
            d.take(t0),
            Some(Ticket {
                at: None,
                measured: false
            })
        );
        let later = t0 + Duration::from_millis(20);
        for _ in 0..3 {
            assert_eq!(
                d.take(later),
                Some(Ticket {
                    at: None,
                    measured: true
                })
            );
        }
        assert_eq!(d.take(later), None);
        assert_eq!(d.take(t0), None, "stays finished");

        let d = Dispenser::new(
            t0,
            Duration::ZERO,
            Duration::from_secs(5),
            None,
            None,
            s.clone(),
        );
        assert!(d.take(t0).is_some());
        s.store(true, Ordering::Relaxed);
        assert!(d.take(t0).is_none());
        let d = Dispenser::new(
            t0,
            Duration::ZERO,
            Duration::from_secs(5),
            None,
            None,
            stop(),
        );
        assert!(d.take(t0 + Duration::from_secs(5)).is_none());
    }
}
