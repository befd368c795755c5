//! The one counters registry every stage reports into.
