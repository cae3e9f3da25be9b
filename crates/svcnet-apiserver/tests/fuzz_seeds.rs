//! The API fuzz target's seeds, and the inputs it found problems with, run as ordinary tests.

#[test]
fn fuzz_seeds_and_regressions_go_through_the_request_path() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/api_request");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("the seed directory") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        svcnet_apiserver::fuzzing::request_path(&data);
        n += 1;
    }
    assert!(n >= 8, "{n} seeds");
}
