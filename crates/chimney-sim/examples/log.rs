fn main() {
    let seed: u64 = std::env::args().nth(1).unwrap().parse().unwrap();
    let sc = chimney_sim::scenario::Scenario::from_seed(seed, &Default::default());
    println!("{sc:#?}");
    let r = chimney_sim::run(&sc, true);
    for l in r.log.iter().take(std::env::args().nth(2).map_or(400, |x| x.parse().unwrap())) {
        println!("{l}");
    }
    println!("{:?}", r.failures);
}
