//! Integration tests of cipherlake-policy: parsing and validation errors with paths and lines,
//! canonical hashes, signed updates under attack, evaluation of hand-built claims (every reason
//! alone and all together), templating, imports, and the documentation's example.

mod policy {
    pub mod common;

    mod docs;
    mod evaluate;
    mod hash;
    mod identity;
    mod import;
    mod parse;
    mod render;
    mod update;
    mod validate;
}
