//! Which topics the periodic work must visit. A topic whose channels changed (a delivery, a
//! FIN, a deferral, a dead letter…) or that took records puts itself on the broker's lists;
//! the ~100 ms save and the sync point take the lists and visit only those topics. An idle
//! broker visits nothing, however many topics it holds.
//!
//! A topic is on each list at most once (a flag per topic and list). The flag is cleared when
//! the visit starts, so a change during the visit puts the topic back for the next one; a visit
//! that could not finish its work (a channel whose save failed, or paced) puts it back too.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// The broker's lists of topics to visit (by name: a topic deleted meanwhile is skipped).
#[derive(Debug, Default)]
pub struct Due {
    recent: RefCell<Vec<String>>,
    checkpoint: RefCell<Vec<String>>,
}

impl Due {
    /// The topics to visit at the next ~100 ms save (the list starts empty again).
    pub fn take_recent(&self) -> Vec<String> {
        std::mem::take(&mut *self.recent.borrow_mut())
    }

    /// The topics to visit at the next sync point (the list starts empty again).
    pub fn take_checkpoint(&self) -> Vec<String> {
        std::mem::take(&mut *self.checkpoint.borrow_mut())
    }
}

/// One topic's place on the broker's lists, shared with its channels.
#[derive(Debug)]
pub struct TopicDue {
    topic: String,
    lists: Rc<Due>,
    recent: Cell<bool>,
    checkpoint: Cell<bool>,
}

impl TopicDue {
    pub fn new(topic: String, lists: Rc<Due>) -> Self {
        Self {
            topic,
            lists,
            recent: Cell::new(false),
            checkpoint: Cell::new(false),
        }
    }

    /// A channel's state changed: to be saved at the next ~100 ms save and at the next sync point.
    pub fn changed(&self) {
        self.recent();
        self.checkpoint();
    }

    /// To be visited at the next ~100 ms save.
    pub fn recent(&self) {
        if !self.recent.replace(true) {
            self.lists.recent.borrow_mut().push(self.topic.clone());
        }
    }

    /// To be visited at the next sync point (records appended, a floor moved, a save failed).
    pub fn checkpoint(&self) {
        if !self.checkpoint.replace(true) {
            self.lists.checkpoint.borrow_mut().push(self.topic.clone());
        }
    }

    /// The ~100 ms save visits the topic now: changes from here on put it back on the list.
    pub fn visiting_recent(&self) {
        self.recent.set(false);
    }

    /// The sync point visits the topic now: changes from here on put it back on the list.
    pub fn visiting_checkpoint(&self) {
        self.checkpoint.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_is_listed_once_until_visited() {
        let lists = Rc::new(Due::default());
        let a = TopicDue::new("a".into(), Rc::clone(&lists));
        let b = TopicDue::new("b".into(), Rc::clone(&lists));
        a.changed();
        a.changed();
        b.checkpoint();
        assert_eq!(lists.take_recent(), vec!["a"]);
        assert_eq!(lists.take_checkpoint(), vec!["a", "b"]);
        // Taken but not yet visited: still listed as far as the topic knows.
        a.changed();
        assert!(lists.take_recent().is_empty());
        a.visiting_recent();
        a.changed();
        assert_eq!(lists.take_recent(), vec!["a"]);
        assert!(lists.take_checkpoint().is_empty());
    }
}
