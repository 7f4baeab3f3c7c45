//! CPU turns for guests, fair between tenants (issue 21, item 6).
//!
//! A node has a few run slots (about one per core). A guest's task must hold a slot to be
//! polled, i.e. to run its wasm and the host code it calls synchronously. It takes one when it
//! starts (instantiation and the first call) and whenever it resumes after host I/O, and keeps
//! it while it runs or is runnable. It gives it back
//! - when it waits on host I/O (a poll that returns pending without the guest yielding), and
//! - at every epoch tick (the engine's epoch callback returns [`GuestTurn::yield_turn`]) if
//!   another guest waits: the slot goes to that guest and the yielding one waits in line.
//!   A guest whose current poll began less than half a tick ago ([`GuestTurn::running_for`])
//!   only resumed since the tick (from waiting on its client or on host I/O): it hands its
//!   slot on the same way when another guest waits ([`GuestTurn::hand_off_turn`]), and
//!   otherwise carries on without the yields to the runtime below.
//!   With nobody waiting it keeps its slot and only yields to the runtime once, so the
//!   node's own tasks (connections, the registry) still run between slices.
//!
//! A guest that finds no free slot waits in its tenant's queue, parked (not in the runtime's run
//! queue), and freed slots are handed round-robin across the tenants with waiting guests
//! (oldest guest first within a tenant). A tenant with 64 spinning instances thus has at most
//! `slots` of them runnable at once and gets one turn per round like a tenant with one short
//! request, which waits about one slice per competing tenant, not one per competing instance.
//! A guest handed a slot first goes once to the back of the runtime's run queue, so a chain of
//! hand-offs cannot starve the node's own tasks (reading connections, writing responses).
//!
//! Without contention a guest's poll costs two uncontended mutex operations.

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::cpu::CpuMeter;

/// Hands run slots to guests, round-robin across tenants.
pub struct CpuScheduler {
    /// What guests' poll start times count from (see [`GuestTurn::running_for`]).
    base: Instant,
    slots: usize,
    state: Mutex<State>,
    waits: AtomicU64,
}

struct State {
    /// Slots nobody holds. Positive only while no guest waits: a freed slot goes straight to
    /// the next waiter.
    free: usize,
    /// Tenants with waiting guests, in the order of their next turn.
    rotation: VecDeque<Arc<str>>,
    /// Each tenant's waiting guests, oldest first.
    queues: HashMap<Arc<str>, VecDeque<u64>>,
    /// Every live guest.
    guests: HashMap<u64, Guest>,
    next_id: u64,
}

struct Guest {
    phase: Phase,
    waker: Option<Waker>,
    /// It yielded at an epoch tick keeping its slot (nobody waited): its pending poll is not
    /// an I/O wait.
    yielded: bool,
    /// It was just handed a slot by another guest's task, whose poll woke it.
    handed: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Neither holding nor waiting for a slot.
    Idle,
    /// In its tenant's queue.
    Waiting,
    /// Holds a slot (running, or runnable).
    Holding,
}

impl CpuScheduler {
    /// A scheduler with `slots` run slots (at least one).
    pub fn new(slots: usize) -> Arc<Self> {
        let slots = slots.max(1);
        Arc::new(Self {
            base: Instant::now(),
            slots,
            state: Mutex::new(State {
                free: slots,
                rotation: VecDeque::new(),
                queues: HashMap::new(),
                guests: HashMap::new(),
                next_id: 0,
            }),
            waits: AtomicU64::new(0),
        })
    }

    /// Run slots of this node.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Times a guest found every slot taken and waited for a turn.
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// Guests waiting for a turn now.
    pub fn waiting(&self) -> usize {
        self.lock().queues.values().map(VecDeque::len).sum()
    }

    /// A new guest of `tenant`, holding no slot yet; `metered`, the CPU time of its polls is
    /// summed (for a CPU budget).
    pub fn guest(self: &Arc<Self>, tenant: Arc<str>, metered: bool) -> Arc<GuestTurn> {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.guests.insert(
            id,
            Guest {
                phase: Phase::Idle,
                waker: None,
                yielded: false,
                handed: false,
            },
        );
        Arc::new(GuestTurn {
            scheduler: self.clone(),
            tenant,
            id,
            meter: metered.then(CpuMeter::default),
            poll_started: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn nanos_since_base(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

impl State {
    fn guest(&mut self, id: u64) -> &mut Guest {
        self.guests
            .get_mut(&id)
            .expect("a live guest is registered")
    }

    /// Gives a freed slot to the next waiter in round-robin order, or back to the free ones;
    /// returns the waker to call once the lock is released.
    fn hand_off(&mut self) -> Option<Waker> {
        while let Some(tenant) = self.rotation.pop_front() {
            let Some(queue) = self.queues.get_mut(&tenant) else {
                continue;
            };
            let Some(id) = queue.pop_front() else {
                self.queues.remove(&tenant);
                continue;
            };
            if queue.is_empty() {
                self.queues.remove(&tenant);
            } else {
                self.rotation.push_back(tenant);
            }
            let guest = self.guest(id);
            guest.phase = Phase::Holding;
            guest.handed = true;
            return guest.waker.take();
        }
        self.free += 1;
        None
    }

    /// Puts guest `id` of `tenant` in line, waking `waker` when its turn comes.
    fn enqueue(&mut self, id: u64, tenant: &Arc<str>, waker: &Waker) {
        let guest = self.guest(id);
        guest.phase = Phase::Waiting;
        guest.waker = Some(waker.clone());
        match self.queues.get_mut(tenant) {
            Some(queue) => queue.push_back(id),
            None => {
                self.queues.insert(tenant.clone(), VecDeque::from([id]));
                self.rotation.push_back(tenant.clone());
            }
        }
    }
}

/// One guest's place with the scheduler, shared by its task ([`GuestTurn::run`]) and its
/// store's epoch callback ([`GuestTurn::yield_turn`]). Dropped with both, it gives back a slot
/// it holds or leaves the queue.
pub struct GuestTurn {
    scheduler: Arc<CpuScheduler>,
    tenant: Arc<str>,
    id: u64,
    meter: Option<CpuMeter>,
    /// When the task's current poll began, in nanoseconds from the scheduler's base.
    poll_started: AtomicU64,
}

impl GuestTurn {
    /// Runs `future` (the guest's task), polling it only while this guest holds a slot.
    pub async fn run<F: Future>(self: Arc<Self>, future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        poll_fn(move |cx| {
            if !self.take(cx) {
                return Poll::Pending;
            }
            self.poll_started
                .store(self.scheduler.nanos_since_base(), Ordering::Relaxed);
            let polled = match &self.meter {
                Some(meter) => meter.measure(|| future.as_mut().poll(cx)),
                None => future.as_mut().poll(cx),
            };
            self.after_poll(polled.is_ready());
            polled
        })
        .await
    }

    /// How long the guest's task has been in its current poll (running wasm or host code it
    /// calls synchronously). Called from the epoch callback, which runs inside that poll: a
    /// guest that only resumed since the last tick has not used a slice and need not yield.
    pub fn running_for(&self) -> Duration {
        let started = self.poll_started.load(Ordering::Relaxed);
        Duration::from_nanos(self.scheduler.nanos_since_base().saturating_sub(started))
    }

    /// CPU time the guest's task used so far, when it is metered (see [`CpuMeter::used`]).
    pub fn cpu_used(&self) -> Option<std::time::Duration> {
        self.meter.as_ref().map(CpuMeter::used)
    }

    /// What a guest that used its slice awaits at an epoch tick: with another guest waiting it
    /// gives its slot to the next in round-robin order and waits for its own turn; otherwise it
    /// keeps the slot and only lets the runtime run other tasks once.
    pub fn yield_turn(self: &Arc<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        // A whole slice ran in one task poll. Yield to the runtime that many times over (each
        // a cheap poll) before anything else, so the worker reaches its next look for I/O
        // events now: otherwise, with every worker running guests, a new request or
        // connection waits up to `RUNTIME_EVENT_INTERVAL` slices to be noticed.
        self.yield_after(crate::config::RUNTIME_EVENT_INTERVAL)
    }

    /// What a guest that resumed since the last tick awaits at the tick when another guest
    /// waits ([`Self::others_waiting`]): it gives its slot to the next in round-robin order,
    /// as at the end of a slice, but owes the runtime no yields (it has not held the worker
    /// for a slice).
    pub fn hand_off_turn(self: &Arc<Self>) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        self.yield_after(1)
    }

    /// One yield to the runtime that keeps this guest's run slot, for a guest that only lets
    /// its store's event loop take another pass (it has used no slice and waits on no I/O):
    /// it resumes without queueing for a slot again.
    pub fn pass(self: &Arc<Self>) -> impl Future<Output = ()> + Send + use<> {
        let turn = self.clone();
        let mut yielded = false;
        poll_fn(move |cx| {
            if yielded {
                return Poll::Ready(());
            }
            yielded = true;
            turn.keep_slot_pending(turn.scheduler.lock(), cx)
        })
    }

    /// Whether some guest waits for a run slot now.
    pub fn others_waiting(&self) -> bool {
        !self.scheduler.lock().rotation.is_empty()
    }

    /// [`Self::yield_turn`] with `ticks - 1` yields to the runtime first.
    fn yield_after(self: &Arc<Self>, ticks: u32) -> Pin<Box<dyn Future<Output = ()> + Send>> {
        let turn = self.clone();
        let mut started = false;
        let mut ticks = ticks;
        Box::pin(poll_fn(move |cx| {
            let scheduler = &turn.scheduler;
            if ticks > 1 {
                ticks -= 1;
                return turn.keep_slot_pending(scheduler.lock(), cx);
            }
            let mut state = scheduler.lock();
            if started {
                let guest = state.guest(turn.id);
                return if guest.phase == Phase::Holding {
                    Poll::Ready(())
                } else {
                    if !guest
                        .waker
                        .as_ref()
                        .is_some_and(|w| w.will_wake(cx.waker()))
                    {
                        guest.waker = Some(cx.waker().clone());
                    }
                    Poll::Pending
                };
            }
            started = true;
            if state.rotation.is_empty() {
                return turn.keep_slot_pending(state, cx);
            }
            // In line first, then hand the slot on: a tenant whose other guests already wait
            // keeps its place in the rotation, and one that had none joins at its end. The
            // other way round the yielder's tenant, put back in the rotation when its guest
            // got the slot, stood ahead of a tenant that had just yielded: two turns to one.
            state.enqueue(turn.id, &turn.tenant, cx.waker());
            let next = state.hand_off();
            scheduler.waits.fetch_add(1, Ordering::Relaxed);
            drop(state);
            if let Some(next) = next {
                next.wake();
            }
            Poll::Pending
        }))
    }

    /// Returns `Pending` for a yield to the runtime that keeps this guest's slot: the pending
    /// poll is marked as no I/O wait (see `after_poll`) and the task is woken to run again.
    fn keep_slot_pending(
        &self,
        mut state: MutexGuard<'_, State>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        state.guest(self.id).yielded = true;
        drop(state);
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Takes a slot for this poll (or keeps the one held), or waits in line.
    fn take(&self, cx: &mut Context<'_>) -> bool {
        let scheduler = &self.scheduler;
        let mut state = scheduler.lock();
        let free = state.free;
        let guest = state.guest(self.id);
        let phase = guest.phase;
        match phase {
            // Woken by the guest that handed it the slot, it would run next on that worker
            // (the runtime's LIFO slot), ahead of everything already queued there: connections
            // waiting to be read, other tenants' requests. It yields once first, to the back
            // of the run queue, keeping its slot.
            Phase::Holding if guest.handed => {
                guest.handed = false;
                cx.waker().wake_by_ref();
                false
            }
            Phase::Holding => {
                guest.yielded = false;
                true
            }
            Phase::Idle if free > 0 => {
                guest.phase = Phase::Holding;
                state.free -= 1;
                true
            }
            Phase::Idle => {
                state.enqueue(self.id, &self.tenant, cx.waker());
                scheduler.waits.fetch_add(1, Ordering::Relaxed);
                false
            }
            Phase::Waiting => {
                if !guest
                    .waker
                    .as_ref()
                    .is_some_and(|w| w.will_wake(cx.waker()))
                {
                    guest.waker = Some(cx.waker().clone());
                }
                false
            }
        }
    }

    /// Gives the slot back when the guest finished or waits on host I/O; keeps it when the
    /// guest only yielded at a tick, or is already back in line.
    fn after_poll(&self, finished: bool) {
        let mut state = self.scheduler.lock();
        let guest = state.guest(self.id);
        if guest.phase != Phase::Holding || (guest.yielded && !finished) {
            return;
        }
        guest.phase = Phase::Idle;
        guest.yielded = false;
        let next = state.hand_off();
        drop(state);
        if let Some(next) = next {
            next.wake();
        }
    }
}

impl Drop for GuestTurn {
    fn drop(&mut self) {
        let mut state = self.scheduler.lock();
        let Some(guest) = state.guests.remove(&self.id) else {
            return;
        };
        let next = match guest.phase {
            Phase::Idle => None,
            Phase::Holding => state.hand_off(),
            Phase::Waiting => {
                if let Some(queue) = state.queues.get_mut(&self.tenant) {
                    queue.retain(|id| *id != self.id);
                    if queue.is_empty() {
                        state.queues.remove(&self.tenant);
                        state.rotation.retain(|t| *t != self.tenant);
                    }
                }
                None
            }
        };
        drop(state);
        if let Some(next) = next {
            next.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    fn phase(turn: &GuestTurn) -> Phase {
        turn.scheduler.lock().guests[&turn.id].phase
    }

    /// A guest just handed the slot by another's poll yields once to the back of the run
    /// queue, keeping the slot, and runs on its next poll.
    fn take_handed_slot(turn: &GuestTurn) {
        assert!(
            !turn.take(&mut cx()),
            "a guest handed the slot first goes to the back of the run queue once"
        );
        assert!(turn.take(&mut cx()), "and runs on its next poll");
    }

    /// One slot, guest a (tenant a) holding it and guest b (tenant b) waiting for it.
    fn a_holding_b_waiting() -> (Arc<CpuScheduler>, Arc<GuestTurn>, Arc<GuestTurn>) {
        let scheduler = CpuScheduler::new(1);
        let a = scheduler.guest("a".into(), false);
        let b = scheduler.guest("b".into(), false);
        assert!(a.take(&mut cx()));
        assert!(!a.others_waiting(), "nobody waits yet: a carries on");
        assert!(!b.take(&mut cx()), "b waits for the one slot");
        assert!(a.others_waiting());
        (scheduler, a, b)
    }

    /// Polls `yielding` through its yields to the runtime, which come first and keep the slot
    /// even with other guests waiting; the next poll acts on the scheduler.
    fn yield_to_runtime(turn: &GuestTurn, yielding: &mut Pin<Box<dyn Future<Output = ()> + Send>>) {
        for _ in 1..crate::config::RUNTIME_EVENT_INTERVAL {
            assert!(yielding.as_mut().poll(&mut cx()).is_pending());
            turn.after_poll(false);
            assert_eq!(
                phase(turn),
                Phase::Holding,
                "kept through the runtime yields"
            );
            assert!(turn.take(&mut cx()), "and polled again at once");
        }
    }

    #[test]
    fn hands_turns_round_robin_across_tenants_not_instances() {
        let scheduler = CpuScheduler::new(1);
        // Eight spinners of tenant a, then one request of tenant b.
        let turns: Vec<Arc<GuestTurn>> = (0..8)
            .map(|_| scheduler.guest("a".into(), false))
            .chain([scheduler.guest("b".into(), false)])
            .collect();
        let taken: Vec<bool> = turns.iter().map(|t| t.take(&mut cx())).collect();
        assert_eq!(taken.iter().filter(|t| **t).count(), 1);
        assert_eq!(scheduler.waiting(), 8);
        let mut current = 0;
        let mut order = Vec::new();
        for _ in 0..6 {
            // The holder's slice ends with others waiting: it hands the slot on and waits.
            let mut yielding = turns[current].yield_turn();
            yield_to_runtime(&turns[current], &mut yielding);
            assert!(yielding.as_mut().poll(&mut cx()).is_pending());
            turns[current].after_poll(false);
            assert_eq!(phase(&turns[current]), Phase::Waiting);
            let holders: Vec<usize> = (0..turns.len())
                .filter(|&i| phase(&turns[i]) == Phase::Holding)
                .collect();
            assert_eq!(holders.len(), 1, "one slot, one holder");
            current = holders[0];
            order.push(&*turns[current].tenant == "b");
            take_handed_slot(&turns[current]);
        }
        // b, queued behind seven of a's spinners, got the second turn, and every other one
        // after that: one turn per tenant per round.
        assert_eq!(order, [false, true, false, true, false, true]);
        assert_eq!(scheduler.waits(), 8 + 6);
    }

    #[test]
    fn a_pass_keeps_the_slot_even_with_others_waiting() {
        let (_scheduler, a, b) = a_holding_b_waiting();
        let mut pass = Box::pin(a.pass());
        assert!(pass.as_mut().poll(&mut cx()).is_pending());
        a.after_poll(false);
        assert_eq!(phase(&a), Phase::Holding, "kept through the pass");
        assert_eq!(phase(&b), Phase::Waiting);
        assert!(a.take(&mut cx()), "and polled again at once");
        assert!(pass.as_mut().poll(&mut cx()).is_ready());
        // Waiting on I/O afterwards frees the slot, for b.
        a.after_poll(false);
        assert_eq!(phase(&a), Phase::Idle);
        assert_eq!(phase(&b), Phase::Holding);
    }

    #[test]
    fn keeps_the_slot_across_a_yield_nobody_waits_for_and_frees_it_on_io() {
        let scheduler = CpuScheduler::new(1);
        let a = scheduler.guest("a".into(), false);
        assert!(a.take(&mut cx()));
        let mut yielding = a.yield_turn();
        yield_to_runtime(&a, &mut yielding);
        assert!(
            yielding.as_mut().poll(&mut cx()).is_pending(),
            "yields once"
        );
        a.after_poll(false);
        assert_eq!(phase(&a), Phase::Holding, "kept: nobody waits");
        let b = scheduler.guest("b".into(), false);
        assert!(
            !b.take(&mut cx()),
            "the yielded guest still holds the only slot"
        );
        assert!(a.take(&mut cx()));
        assert!(yielding.as_mut().poll(&mut cx()).is_ready());
        // A pending poll without a yield is an I/O wait: the slot goes to b.
        a.after_poll(false);
        assert_eq!(phase(&a), Phase::Idle);
        assert_eq!(phase(&b), Phase::Holding);
        take_handed_slot(&b);
    }

    #[test]
    fn a_dropped_guest_leaves_the_queue_and_passes_on_its_slot() {
        let scheduler = CpuScheduler::new(1);
        let a = scheduler.guest("a".into(), false);
        let b = scheduler.guest("b".into(), false);
        let c = scheduler.guest("c".into(), false);
        assert!(a.take(&mut cx()));
        assert!(!b.take(&mut cx()));
        assert!(!c.take(&mut cx()));
        drop(b);
        assert_eq!(scheduler.waiting(), 1);
        // a ends: its slot goes to c; c is dropped (its task aborted) before it ran.
        a.after_poll(true);
        assert_eq!(phase(&c), Phase::Holding);
        drop(c);
        drop(a);
        let state = scheduler.lock();
        assert_eq!(state.free, 1, "no slot lost");
        assert!(state.guests.is_empty() && state.rotation.is_empty() && state.queues.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_yielding_tasks_to_completion_under_contention() {
        let scheduler = CpuScheduler::new(1);
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let tenant: Arc<str> = if i % 2 == 0 { "a".into() } else { "b".into() };
                let turn = scheduler.guest(tenant, i % 4 == 0);
                let yields = turn.clone();
                tokio::spawn(turn.run(async move {
                    for _ in 0..20 {
                        yields.yield_turn().await;
                        tokio::task::yield_now().await;
                    }
                    i
                }))
            })
            .collect();
        for (i, task) in tasks.into_iter().enumerate() {
            assert_eq!(task.await.unwrap(), i);
        }
        let state = scheduler.lock();
        assert_eq!(state.free, 1);
        assert!(state.guests.is_empty() && state.queues.is_empty());
    }

    #[test]
    fn a_guest_that_resumed_since_the_tick_hands_its_slot_on_without_runtime_yields() {
        let (_scheduler, a, b) = a_holding_b_waiting();
        // Its first poll gives the slot to b at once: no yields to the runtime before it.
        let mut handing = a.hand_off_turn();
        assert!(handing.as_mut().poll(&mut cx()).is_pending());
        a.after_poll(false);
        assert_eq!(phase(&a), Phase::Waiting);
        assert_eq!(phase(&b), Phase::Holding);
        // b runs, ends, and a gets its turn back.
        take_handed_slot(&b);
        b.after_poll(true);
        assert_eq!(phase(&a), Phase::Holding);
        assert!(handing.as_mut().poll(&mut cx()).is_ready());
    }
}
