//! The decide stage: judging events. Empty today: policy (who may touch
//! which weights) and detectors (named theft patterns) land here.
//!
//! A detector sees every event after enrichment and may add findings; it
//! sits behind the one small [`Detector`] trait so that a new detection is
//! one new file plus one line in [`Detectors::new`].

pub mod policy;

use crate::event::Event;

/// A named detection over the stream of events.
pub trait Detector: Send {
    /// A stable identifier, written on every finding (`ww.copy.full_read`).
    fn id(&self) -> &'static str;
    /// Looks at one event; returns the findings it completes, if any.
    fn observe(&mut self, event: &Event) -> Vec<Event>;
}

/// Every registered detector, run in order on each event.
#[derive(Default)]
pub struct Detectors {
    detectors: Vec<Box<dyn Detector>>,
}

impl Detectors {
    /// The detectors enabled by default. None exist yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs every detector on `event`; returns their findings in order.
    pub fn observe(&mut self, event: &Event) -> Vec<Event> {
        self.detectors
            .iter_mut()
            .flat_map(|d| d.observe(event))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.detectors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.detectors.is_empty()
    }
}
