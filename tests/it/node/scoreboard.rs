//! The sharing scoreboard through the API: a request decided on the day it came, a read served
//! and one denied, as the registry counts them.

use exchange_core::identity::Role;
use exchange_proto::registry::v1 as pb;
use tonic::Code;

use super::*;
use crate::harness::*;

#[tokio::test]
async fn the_scoreboard_counts_decisions_and_reads_and_ranks_by_the_formula() {
    let (ex, node, keys, _) = setup().await;
    let mut reader = node.client(&ex, "js.scjg", Role::System).await;
    reader
        .get(get(&keys[..1], &["name"], "business-licensing"))
        .await
        .unwrap();
    let denied = reader.get(get(&keys[..1], &["name"], "marketing")).await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
    wait_shipped(&node, &ex).await;

    // Any member may look.
    let mut rsj = ex.client("js.rsj", Role::System).await;
    let board = rsj
        .get_scoreboard(pb::GetScoreboardRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(board
        .formula
        .starts_with("score = 100 × the mean of the parts that apply"));
    let ranked: Vec<(&str, u32, Option<f64>)> = board
        .departments
        .iter()
        .map(|d| (d.department_id.as_str(), d.rank, d.score))
        .collect();
    // js.gongan decided its one request on time: 1/1, the only part that applies, 100. The
    // others publish nothing judged and were asked nothing: no score, last, by id.
    assert_eq!(
        ranked,
        [
            ("js.gongan", 1, Some(100.0)),
            ("js.nj.gongan", 2, None),
            ("js.rsj", 2, None),
            ("js.scjg", 2, None),
            ("js.zrzy", 2, None),
        ]
    );
    let gongan = &board.departments[0];
    assert_eq!(
        (
            gongan.datasets_conditional,
            gongan.grants_requested,
            gongan.grants_given
        ),
        (1, 1, 1)
    );
    assert_eq!(
        (gongan.decisions, gongan.decisions_on_time, gongan.median_decision_days),
        (1, 1, Some(0.0)),
        "decided the day it came: no working day"
    );
    assert_eq!((gongan.reads_served, gongan.reads_denied), (1, 1));
    let zrzy = board.departments.iter().find(|d| d.department_id == "js.zrzy").unwrap();
    assert_eq!((zrzy.datasets_open, zrzy.datasets_not_shared), (1, 1));

    // A period before anything happened counts nothing of it.
    let before = rsj
        .get_scoreboard(pb::GetScoreboardRequest {
            from_day: "2020-01-01".into(),
            to_day: "2020-01-31".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let gongan = before
        .departments
        .iter()
        .find(|d| d.department_id == "js.gongan")
        .unwrap();
    assert_eq!(
        (gongan.grants_requested, gongan.decisions, gongan.reads_served),
        (0, 0, 0)
    );
    assert_eq!(gongan.datasets_conditional, 0, "registered after the period");

    for (from, to, fragment) in [
        ("2026-13-01", "", "not a day of the calendar"),
        ("2026-12-02", "2026-12-01", "after it ends"),
    ] {
        assert_status(
            rsj.get_scoreboard(pb::GetScoreboardRequest {
                from_day: from.into(),
                to_day: to.into(),
            })
            .await,
            Code::InvalidArgument,
            fragment,
        );
    }
}
