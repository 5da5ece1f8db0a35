//! Channels the calls originated (legs, outbound calls, snoops), by the ids Asterisk gave them.
//!
//! A call names the channels it creates `<call id>_<kind><n>`, so events find their call by the
//! name alone; but asking Asterisk to originate a channel with a chosen id makes it check that
//! the id is free by locking every channel in turn under its global channel lock, which stalls
//! every channel's creation and hang-up on a loaded PBX (BENCHMARKS.md, "Record start on a
//! real Asterisk 22"). So Asterisk chooses the id, and this registry maps it to its call.
//!
//! Asterisk subscribes the app to the new channel before it answers the originate request, and
//! the events come on the websocket, not the request's connection: an event about the channel
//! can be read before the answer. Such events wait here until the answer names their channel.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::ari::Event;

/// Events kept for channels not yet known; past it the oldest are handled as nobody's.
const PARKED_MAX: usize = 1024;

/// `T` is whatever reaches the owning call (its task's sender).
pub(super) struct Originated<T> {
    owners: HashMap<String, T>,
    /// Originate requests sent and not answered yet.
    unanswered: usize,
    /// Events about channels no call knows, in arrival order, with the channel's id.
    parked: VecDeque<(String, Arc<Event>)>,
}

impl<T> Default for Originated<T> {
    fn default() -> Self {
        Originated {
            owners: HashMap::new(),
            unanswered: 0,
            parked: VecDeque::new(),
        }
    }
}

impl<T: Clone> Originated<T> {
    /// The call owning Asterisk's channel `id`.
    pub(super) fn owner(&self, id: &str) -> Option<T> {
        self.owners.get(id).cloned()
    }

    /// An originate request is about to be sent.
    pub(super) fn requesting(&mut self) {
        self.unanswered += 1;
    }

    /// The request was answered: channel `id` is `owner`'s. Returns the events parked for it
    /// (to deliver to the owner first, in order) and those nobody can claim any more.
    pub(super) fn answered(&mut self, id: &str, owner: T) -> (Vec<Arc<Event>>, Vec<Arc<Event>>) {
        self.owners.insert(id.to_string(), owner);
        let (mine, others): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|(channel, _)| channel == id);
        self.parked = others;
        let unclaimed = self.request_done();
        (mine.into_iter().map(|(_, e)| e).collect(), unclaimed)
    }

    /// The request failed: no channel. Returns the events nobody can claim any more.
    pub(super) fn refused(&mut self) -> Vec<Arc<Event>> {
        self.request_done()
    }

    fn request_done(&mut self) -> Vec<Arc<Event>> {
        self.unanswered = self.unanswered.saturating_sub(1);
        if self.unanswered > 0 {
            return Vec::new();
        }
        self.parked.drain(..).map(|(_, e)| e).collect()
    }

    /// An event about channel `id` that no call claims. While an originate request is
    /// unanswered it is kept (`None`); otherwise, or when the oldest kept must make room, the
    /// events to handle as nobody's are returned.
    pub(super) fn park(&mut self, id: &str, event: Arc<Event>) -> Option<Vec<Arc<Event>>> {
        if self.unanswered == 0 {
            return Some(vec![event]);
        }
        self.parked.push_back((id.to_string(), event));
        if self.parked.len() > PARKED_MAX {
            return self.parked.pop_front().map(|(_, e)| vec![e]);
        }
        None
    }

    /// A saved call taken over: its channels are known from the start.
    pub(super) fn adopt(&mut self, id: &str, owner: T) {
        self.owners.insert(id.to_string(), owner);
    }

    /// A call ended: its channels' events go nowhere now.
    pub(super) fn forget<'a>(&mut self, ids: impl IntoIterator<Item = &'a str>) {
        for id in ids {
            self.owners.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ari::events::{ChannelStateChange, StasisEnd};
    use crate::ari::models::Channel;

    fn channel(id: &str) -> Channel {
        serde_json::from_value(serde_json::json!({
            "id": id, "name": format!("Local/201@agents-{id};1"), "state": "Ringing",
            "caller": {"name": "", "number": ""}, "connected": {"name": "", "number": ""},
            "accountcode": "", "dialplan": {"context": "agents", "exten": "201", "priority": 1,
            "app_name": "", "app_data": ""}, "creationtime": "2026-12-01T06:00:00.000+0000",
            "language": "en"
        }))
        .expect("channel")
    }

    fn ringing(id: &str) -> Arc<Event> {
        Arc::new(Event::ChannelStateChange(ChannelStateChange {
            channel: channel(id),
            timestamp: String::new(),
            application: "recorder".into(),
            asterisk_id: None,
        }))
    }

    fn ended(id: &str) -> Arc<Event> {
        Arc::new(Event::StasisEnd(StasisEnd {
            channel: channel(id),
            timestamp: String::new(),
            application: "recorder".into(),
            asterisk_id: None,
        }))
    }

    #[test]
    fn events_read_before_the_answer_reach_the_call_in_order() {
        let mut originated = Originated::default();
        originated.requesting();
        originated.requesting();
        assert!(originated.park("7.1", ringing("7.1")).is_none());
        assert!(originated.park("8.1", ringing("8.1")).is_none());
        assert!(originated.park("7.1", ended("7.1")).is_none());
        let (mine, unclaimed) = originated.answered("7.1", "call 7");
        assert_eq!(
            mine.iter().map(|e| e.type_name()).collect::<Vec<_>>(),
            ["ChannelStateChange", "StasisEnd"]
        );
        assert!(unclaimed.is_empty(), "another request is unanswered");
        assert_eq!(originated.owner("7.1"), Some("call 7"));
        // The last answer releases what no call claimed.
        let unclaimed = originated.refused();
        assert_eq!(unclaimed.len(), 1);
        assert_eq!(unclaimed[0].channel().map(|c| c.id.as_str()), Some("8.1"));
        // With nothing unanswered an unknown channel's event is nobody's at once.
        assert_eq!(
            originated.park("9.1", ringing("9.1")).map(|e| e.len()),
            Some(1)
        );
        originated.forget(["7.1"]);
        assert_eq!(originated.owner("7.1"), None);
    }

    #[test]
    fn parked_events_are_bounded() {
        let mut originated: Originated<&str> = Originated::default();
        originated.requesting();
        for n in 0..PARKED_MAX {
            assert!(originated.park(&n.to_string(), ringing("x")).is_none());
        }
        let evicted = originated.park("last", ringing("last")).expect("room made");
        assert_eq!(evicted.len(), 1);
        assert_eq!(originated.parked.len(), PARKED_MAX);
    }
}
