//! PrioritySort: higher `spec.priority` first, then the pod that entered the queue first.

use crate::framework::{Plugin, QueueSortPlugin};
use crate::types::PodInfo;

pub const NAME: &str = "PrioritySort";

#[derive(Debug, Default)]
pub struct PrioritySort;

impl Plugin for PrioritySort {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl QueueSortPlugin for PrioritySort {
    fn less(&self, a: &PodInfo, a_added: u64, b: &PodInfo, b_added: u64) -> bool {
        a.priority > b.priority || (a.priority == b.priority && a_added < b_added)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::testing::*;

    #[test]
    fn priority_sort_should_order_by_priority_then_arrival() {
        let mut high = pod("high", &[]);
        high.spec.as_mut().unwrap().priority = Some(10);
        let (high, low) = (pod_info(high), pod_info(pod("low", &[])));
        let s = PrioritySort;
        assert!(s.less(&high, 5, &low, 1));
        assert!(!s.less(&low, 1, &high, 5));
        assert!(s.less(&low, 1, &low, 2));
    }
}
