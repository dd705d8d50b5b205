//! Client-side machinery that the scheduler, the controller manager and the node share, all
//! of it working through the API like any client (the role of client-go's
//! `tools/leaderelection`, `tools/record`, `util/workqueue` and `informers`):
//!
//! - [`leader`]: leader election on a `coordination.k8s.io` Lease;
//! - [`events`]: the one event recorder, with client-go's spam filter, aggregation and
//!   de-duplication, writing through a bounded buffer that never blocks its caller;
//! - [`workqueue`]: the keyed, rate-limited work queue controllers reconcile from;
//! - [`informers`]: one watch and cache per resource shared by every consumer in a process,
//!   with indexes and change notifications.

pub mod events;
pub mod informers;
pub mod leader;
pub mod scale;
pub mod workqueue;

pub use events::Recorder;
pub use leader::LeaderElector;
pub use workqueue::WorkQueue;
