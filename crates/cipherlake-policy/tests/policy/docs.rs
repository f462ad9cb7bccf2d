//! The documentation cannot drift from the code: docs/policy.md embeds the example file
//! verbatim and lists every reason code.

use cipherlake_policy::Reason;

use super::common::{example, example_text, repo_file};

fn policy_md() -> String {
    let path = repo_file("docs/policy.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn policy_md_embeds_the_example_verbatim() {
    let doc = policy_md();
    let embedded = format!("```yaml\n{}```", example_text());
    assert!(
        doc.contains(&embedded),
        "docs/policy.md must contain docs/policy-example.yaml verbatim in a yaml block"
    );
}

#[test]
fn policy_md_states_the_example_hash() {
    assert!(policy_md().contains(&example().hash().to_string()));
}

#[test]
fn policy_md_documents_every_reason_code() {
    let doc = policy_md();
    for code in Reason::CODES {
        assert!(
            doc.contains(&format!("`{code}`")),
            "docs/policy.md does not document `{code}`"
        );
    }
}
