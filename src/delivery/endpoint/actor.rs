//! The `Actor` impl and the handlers of the messages in `messages.rs`:
//! each one updates the state and lets the send loop (`pump`) go on.

use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;

use super::{
    AddSubscription, BeginDrain, EndpointActor, Enqueue, ForgetSubscription, InFlight, Poke,
    Replayed, Resume, SetPolicy, StopNow,
};
use crate::delivery::health::State;

/// How far back a poke re-reads the queue: deliveries are ordered by a
/// time-based id written by whichever node accepted the event, so a node
/// whose clock runs behind writes ids older than the reader's cursor.
const CLOCK_SKEW_MARGIN: Duration = Duration::from_secs(10);

impl Actor for EndpointActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.schedule_check(ctx, true);
        if self.health.state == State::Paused {
            self.schedule_probe(ctx);
        }
        self.pump(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.metrics.remove();
    }
}

impl Handler<Enqueue> for EndpointActor {
    type Result = ();

    fn handle(&mut self, msg: Enqueue, ctx: &mut Self::Context) {
        for job in msg.0 {
            self.accept(job);
        }
        self.pump(ctx);
    }
}

impl Handler<SetPolicy> for EndpointActor {
    type Result = ();

    fn handle(&mut self, msg: SetPolicy, ctx: &mut Self::Context) {
        self.apply_policy(msg.0, ctx);
        self.pump(ctx);
    }
}

impl Handler<Resume> for EndpointActor {
    type Result = ();

    fn handle(&mut self, _: Resume, ctx: &mut Self::Context) {
        self.pump(ctx);
    }
}

impl Handler<Replayed> for EndpointActor {
    type Result = ();

    fn handle(&mut self, msg: Replayed, ctx: &mut Self::Context) {
        // It may have died moments ago; it is pending again now.
        self.recently_done.remove(&msg.0.id);
        self.accept(msg.0);
        self.pump(ctx);
    }
}

impl Handler<AddSubscription> for EndpointActor {
    type Result = ();

    fn handle(&mut self, msg: AddSubscription, _ctx: &mut Self::Context) {
        self.removed_subscriptions.remove(&msg.id);
        self.subscriptions.insert(msg.id, msg.secret);
    }
}

impl Handler<ForgetSubscription> for EndpointActor {
    type Result = ();

    fn handle(&mut self, msg: ForgetSubscription, ctx: &mut Self::Context) {
        self.subscriptions.remove(&msg.0);
        self.removed_subscriptions.insert(msg.0);
        let known = &mut self.known;
        self.queue.retain(|job| {
            let keep = job.subscription_id != msg.0;
            if !keep {
                known.remove(&job.id);
            }
            keep
        });
        self.backlog
            .arrived
            .retain(|job| job.subscription_id != msg.0);
        self.update_gauges();
        self.retire_if_unused(ctx);
    }
}

impl Handler<BeginDrain> for EndpointActor {
    type Result = u32;

    fn handle(&mut self, _: BeginDrain, ctx: &mut Self::Context) -> u32 {
        self.draining = true;
        self.flush(ctx);
        self.in_flight
    }
}

impl Handler<StopNow> for EndpointActor {
    type Result = ();

    fn handle(&mut self, _: StopNow, ctx: &mut Self::Context) {
        self.draining = true;
        self.flush(ctx);
        self.metrics.remove();
        ctx.stop();
    }
}

impl Handler<Poke> for EndpointActor {
    type Result = ();

    fn handle(&mut self, _: Poke, ctx: &mut Self::Context) {
        let floor = crate::store::id_floor(Utc::now() - CLOCK_SKEW_MARGIN);
        self.backlog.more_in_db = true;
        if let Some(cursor) = &self.backlog.cursor
            && *cursor > floor
        {
            self.backlog.cursor = Some(floor);
        }
        self.pump(ctx);
    }
}

impl Handler<InFlight> for EndpointActor {
    type Result = u32;

    fn handle(&mut self, _: InFlight, _ctx: &mut Self::Context) -> u32 {
        self.in_flight
    }
}
