//! What a user of `#[system_table]` sees when they get it wrong (compile-fail),
//! and proof that generated code uses only fully qualified paths (pass).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass_*.rs");
    t.compile_fail("tests/ui/fail_*.rs");
}
