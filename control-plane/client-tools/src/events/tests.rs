use super::*;

fn pod(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(name.into()),
        namespace: Some("ns".into()),
        uid: Some(format!("uid-{name}")),
        ..Default::default()
    }
}

const SOURCE: Source<'static> = Source { component: "kubelet", host: Some("node-a") };

fn record(
    c: &mut Correlator,
    obj: &ObjectReference,
    reason: &str,
    message: &str,
    at: Instant,
) -> Option<Decision> {
    c.correlate(&SOURCE, obj, EventType::Warning, reason, message.to_string(), at)
}

#[test]
fn recorder_should_count_repeats_of_one_event_instead_of_creating_more() {
    let mut c = Correlator::default();
    let now = Instant::now();
    let first = record(&mut c, &pod("a"), "BackOff", "Back-off restarting", now).unwrap();
    assert!(!first.update);
    assert_eq!(first.count, 1);
    assert!(first.name.starts_with("a."));
    let again = record(&mut c, &pod("a"), "BackOff", "Back-off restarting", now).unwrap();
    assert!(again.update, "the same event again updates the first");
    assert_eq!((again.name.as_str(), again.count), (first.name.as_str(), 2));
    assert!(again.first.is_some());
    let other = record(&mut c, &pod("b"), "BackOff", "Back-off restarting", now).unwrap();
    assert!(!other.update && other.name != first.name, "another object is another event");
    let other_message = record(&mut c, &pod("a"), "BackOff", "something else", now).unwrap();
    assert!(!other_message.update, "another message is another event");
}

#[test]
fn recorder_should_aggregate_many_messages_of_one_reason() {
    let mut c = Correlator::default();
    let now = Instant::now();
    let mut names = HashSet::new();
    for i in 0..AGGREGATE_MAX_EVENTS - 1 {
        let d = record(&mut c, &pod("a"), "Failed", &format!("error {i}"), now).unwrap();
        assert!(!d.message.starts_with(AGGREGATE_PREFIX));
        names.insert(d.name);
    }
    let folded = record(&mut c, &pod("a"), "Failed", "error 10", now).unwrap();
    assert_eq!(folded.message, format!("{AGGREGATE_PREFIX}error 10"));
    assert!(!folded.update);
    let next = record(&mut c, &pod("a"), "Failed", "error 11", now).unwrap();
    assert_eq!(next.message, format!("{AGGREGATE_PREFIX}error 11"));
    assert!(next.update && next.name == folded.name, "aggregated events are one event");
    assert_eq!(next.count, 2);
    // Past the interval the distinct messages are counted afresh.
    let later = now + AGGREGATE_INTERVAL + Duration::from_secs(1);
    let fresh = record(&mut c, &pod("a"), "Failed", "error 12", later).unwrap();
    assert!(!fresh.message.starts_with(AGGREGATE_PREFIX));
}

#[test]
fn recorder_should_drop_events_beyond_the_spam_burst_and_refill_slowly() {
    let mut c = Correlator::default();
    let now = Instant::now();
    let burst = SPAM_BURST as usize;
    let written = (0..burst + 5)
        .filter(|i| record(&mut c, &pod("a"), &format!("R{i}"), "m", now).is_some())
        .count();
    assert_eq!(written, burst, "one object gets a burst of {burst}");
    assert!(record(&mut c, &pod("b"), "R", "m", now).is_some(), "other objects are not limited");
    assert!(record(&mut c, &pod("a"), "R", "m", now + SPAM_REFILL / 2).is_none());
    assert!(record(&mut c, &pod("a"), "R", "m", now + SPAM_REFILL).is_some(), "one token back");
}

#[test]
fn lru_should_forget_the_oldest_entries() {
    let mut lru: Lru<u32> = Lru::default();
    for i in 0..CACHE_ENTRIES + 10 {
        *lru.entry(format!("k{i}"), || 0) += 1;
    }
    assert_eq!(lru.map.len(), CACHE_ENTRIES);
    assert!(!lru.map.contains_key("k0"));
    assert!(lru.map.contains_key(&format!("k{}", CACHE_ENTRIES + 9)));
}
