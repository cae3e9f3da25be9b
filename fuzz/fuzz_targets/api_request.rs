//! The API request path: arbitrary Service, Pod and EndpointSlice bodies and patches (merge,
//! JSON, strategic, apply) through decoding, defaulting, validation and patching. No panic;
//! every failure is a `Status`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    svcnet_apiserver::fuzzing::request_path(data);
});
