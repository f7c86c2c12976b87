//! Fuzz target for the profile parser (`make fuzz`).
//!
//! Any bytes may reach `Profile::from_json_bytes` (profile files are hand-edited and
//! come from pull requests), so beyond "never panics" it checks the promises the rest
//! of the tool relies on: an accepted profile renders to bytes that parse back to the
//! same profile and render identically again (the format is canonical, so re-export
//! gives no diff); its file name maps back to its name; it does not differ from
//! itself and merging it with itself changes nothing; and a rejected input gets an
//! error that names the file and says how to fix it.
#![no_main]

use std::path::Path;

use fingerprint::diff::diff;
use fingerprint::profile::{workload_name_of, Profile, ProfileError, ProfileSet};
use libfuzzer_sys::fuzz_target;

const FILE: &str = "fuzz.json";

fuzz_target!(|data: &[u8]| {
    match Profile::from_json_bytes(data, Path::new(FILE)) {
        Ok(profile) => check_accepted(&profile),
        Err(error) => check_rejected(&error),
    }
});

fn check_accepted(profile: &Profile) {
    let bytes = profile.to_json_bytes().expect("an accepted profile renders");
    let again = Profile::from_json_bytes(&bytes, Path::new(FILE)).expect("rendered output parses");
    assert_eq!(&again, profile, "render -> parse changed the profile");
    assert_eq!(again.to_json_bytes().expect("renders"), bytes, "rendering is not canonical");

    let file_name = profile.file_name();
    assert!(file_name.len() <= 255 && !file_name.starts_with('.'), "bad file name {file_name:?}");
    if !file_name.contains('~') {
        assert_eq!(workload_name_of(&file_name).as_deref(), Some(profile.name.as_str()));
    }

    let mut set = ProfileSet::new();
    set.insert(profile.clone());
    assert!(diff(&set, &set).is_empty(), "a profile differs from itself");
    let merged = ProfileSet::merge(&[set.clone(), set.clone()]).expect("same match");
    assert_eq!(merged, set, "merge is not idempotent");
}

fn check_rejected(error: &ProfileError) {
    let message = error.to_string();
    assert!(message.starts_with(FILE), "error does not name the file: {message}");
    assert!(message.contains("fix: "), "error gives no fix: {message}");
}
