//! chimney's own delivery layer passes the conformance suite that `chimney check` runs
//! against foreign targets: every scenario and a range of seeded interleavings, with no
//! violation, every stream exact and every request back.

use chimney::contract::{Delivery, DeliveryConfig};
use chimney::testkit::conformance::{run_interleaving, run_scenarios, Outcome};

fn make() -> Result<Delivery, String> {
    Ok(Delivery::new(DeliveryConfig::default()))
}

#[test]
fn delivery_passes_every_scenario() {
    let bad: Vec<String> = run_scenarios(&make, &|_| None).iter().filter(|o| !o.ok()).map(Outcome::describe).collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn delivery_passes_the_interleavings() {
    let bad: Vec<String> =
        (1..=300).map(|s| run_interleaving(s, &make, None)).filter(|o| !o.ok()).map(|o| o.describe()).collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
