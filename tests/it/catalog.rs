//! Departments, datasets and schema versions through the API.

use exchange_core::identity::Role;
use exchange_proto::registry::v1 as pb;
use serde_json::json;
use tonic::Code;

use crate::harness::*;

#[tokio::test]
async fn departments_register_update_get_list() {
    let ex = TestExchange::start().await;
    let mut admin = ex.admin().await;
    let province = admin
        .register_department(pb::RegisterDepartmentRequest {
            department: Some(department("js.gongan", pb::Level::Province, "320000", "")),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(province.revision > 0);
    let mut city = department("js.nj.gongan", pb::Level::City, "320100", "js.gongan");
    city.node_endpoint = "https://node.nj.gongan.test:7443".into();
    admin
        .register_department(pb::RegisterDepartmentRequest {
            department: Some(city.clone()),
        })
        .await
        .unwrap();
    assert_status(
        admin
            .register_department(pb::RegisterDepartmentRequest {
                department: Some(city.clone()),
            })
            .await,
        Code::AlreadyExists,
        "already registered",
    );
    city.name = "南京市公安局".into();
    let updated = admin
        .update_department(pb::UpdateDepartmentRequest { department: Some(city) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.name, "南京市公安局");
    let got = admin
        .get_department(pb::GetDepartmentRequest {
            id: "js.nj.gongan".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.name, "南京市公安局");
    assert_eq!(got.parent_id, "js.gongan");
    assert_eq!(got.node_endpoint, "https://node.nj.gongan.test:7443");
    // An update naming the revision it read is refused once another change came in between
    // (here another admin's update, which names no revision and so always applies).
    let mut other = got.clone();
    other.revision = 0;
    other.node_endpoint = "https://node2.nj.gongan.test:7443".into();
    admin
        .update_department(pb::UpdateDepartmentRequest {
            department: Some(other),
        })
        .await
        .unwrap();
    let mut stale = got.clone();
    stale.name = "旧名".into();
    assert_status(
        admin
            .update_department(pb::UpdateDepartmentRequest {
                department: Some(stale),
            })
            .await,
        Code::Aborted,
        "changed since you read it",
    );
    // Read again, the same update applies, and keeps the change made in between.
    let mut fresh = admin
        .get_department(pb::GetDepartmentRequest {
            id: "js.nj.gongan".into(),
        })
        .await
        .unwrap()
        .into_inner();
    fresh.name = "旧名".into();
    let updated = admin
        .update_department(pb::UpdateDepartmentRequest {
            department: Some(fresh),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (updated.name.as_str(), updated.node_endpoint.as_str()),
        ("旧名", "https://node2.nj.gongan.test:7443")
    );
    let children = admin
        .list_departments(pb::ListDepartmentsRequest {
            parent_id: "js.gongan".into(),
            level: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(children.departments.len(), 1);
    // A parent cannot move out from over its children: not to another province, not below them.
    let province = admin
        .get_department(pb::GetDepartmentRequest { id: "js.gongan".into() })
        .await
        .unwrap()
        .into_inner();
    let mut moved = province.clone();
    moved.region_code = "330000".into();
    assert_status(
        admin
            .update_department(pb::UpdateDepartmentRequest {
                department: Some(moved),
            })
            .await,
        Code::InvalidArgument,
        "child department js.nj.gongan would no longer fit under it",
    );
    // Renaming it, children and all, is fine.
    let mut renamed = province.clone();
    renamed.name = "江苏省公安厅（新）".into();
    let renamed = admin
        .update_department(pb::UpdateDepartmentRequest {
            department: Some(renamed),
        })
        .await
        .unwrap()
        .into_inner();
    let mut lowered = renamed;
    lowered.level = pb::Level::City as i32;
    lowered.region_code = "320100".into();
    assert_status(
        admin
            .update_department(pb::UpdateDepartmentRequest {
                department: Some(lowered),
            })
            .await,
        Code::InvalidArgument,
        "child department js.nj.gongan would no longer fit under it",
    );
    let provinces = admin
        .list_departments(pb::ListDepartmentsRequest {
            parent_id: String::new(),
            level: pb::Level::Province as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        provinces.departments.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["js.gongan"]
    );
    assert_status(
        admin
            .get_department(pb::GetDepartmentRequest { id: "js.none".into() })
            .await,
        Code::NotFound,
        "js.none is not registered",
    );
}

#[tokio::test]
async fn bad_departments_are_refused_naming_the_field_and_change_nothing() {
    let ex = TestExchange::start().await;
    let mut admin = ex.admin().await;
    let cases = [
        (department("js.gongan", pb::Level::Province, "32000", ""), "region_code"),
        (
            department("js.gongan", pb::Level::Province, "990000", ""),
            "region_code",
        ),
        (
            department("js.gongan", pb::Level::Province, "320100", ""),
            "province-level",
        ),
        (
            department("js.nj.gongan", pb::Level::City, "320100", "js.missing"),
            "register the parent first",
        ),
        (
            department("JS.Gongan", pb::Level::Province, "320000", ""),
            "department id",
        ),
        (department("js.gongan", pb::Level::Unspecified, "320000", ""), "level"),
    ];
    for (dept, fragment) in cases {
        assert_status(
            admin
                .register_department(pb::RegisterDepartmentRequest { department: Some(dept) })
                .await,
            Code::InvalidArgument,
            fragment,
        );
    }
    let all = admin
        .list_departments(pb::ListDepartmentsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(all.departments.is_empty(), "refused registrations stored something");
}

#[tokio::test]
async fn datasets_register_update_get_search() {
    let ex = TestExchange::start().await;
    ex.seed().await;
    let mut owner = ex.client("js.gongan", Role::Node).await;
    let got = owner
        .get_dataset(pb::GetDatasetRequest {
            id: "js.gongan/population".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.owner_id, "js.gongan");
    assert_eq!(got.latest_version, 1);
    assert_eq!(got.versions.len(), 1);
    let sensitive: Vec<(&str, &str)> = got.versions[0]
        .sensitive_fields
        .iter()
        .map(|s| (s.pointer.as_str(), s.sensitivity.as_str()))
        .collect();
    assert_eq!(
        sensitive,
        [
            ("/properties/id", "id_number"),
            ("/properties/name", "name"),
            ("/properties/phone", "phone")
        ]
    );

    let mut update = dataset("js.gongan/population", pb::Classification::Conditional, "id");
    update.title = "人口基础信息".into();
    update.tags = vec!["identity".into(), "户籍".into()];
    let updated = owner
        .update_dataset(pb::UpdateDatasetRequest {
            dataset: Some(update.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.title, "人口基础信息");
    assert_eq!(updated.versions.len(), 1, "update keeps the schema versions");
    update.key_field = "name".into();
    assert_status(
        owner
            .update_dataset(pb::UpdateDatasetRequest { dataset: Some(update) })
            .await,
        Code::InvalidArgument,
        "key_field",
    );

    let search = |owner_id: &str, classification: pb::Classification, text: &str| pb::SearchDatasetsRequest {
        owner_id: owner_id.into(),
        domain: String::new(),
        classification: classification as i32,
        text: text.into(),
    };
    let ids = |r: pb::SearchDatasetsResponse| r.datasets.into_iter().map(|d| d.id).collect::<Vec<_>>();
    let by_owner = owner
        .search_datasets(search("js.zrzy", pb::Classification::Unspecified, ""))
        .await
        .unwrap();
    assert_eq!(ids(by_owner.into_inner()), ["js.zrzy/places", "js.zrzy/secrets"]);
    let by_class = owner
        .search_datasets(search("", pb::Classification::Open, ""))
        .await
        .unwrap();
    assert_eq!(ids(by_class.into_inner()), ["js.zrzy/places"]);
    let by_text = owner
        .search_datasets(search("", pb::Classification::Unspecified, "户籍"))
        .await
        .unwrap();
    assert_eq!(ids(by_text.into_inner()), ["js.gongan/population"]);
    let by_domain = owner
        .search_datasets(pb::SearchDatasetsRequest {
            domain: "nothing-here".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(by_domain.into_inner().datasets.is_empty());
}

#[tokio::test]
async fn a_dataset_needs_a_registered_owner_and_a_valid_id() {
    let ex = TestExchange::start().await;
    let mut admin = ex.admin().await;
    // Asking for "population" instead of "js.gongan/population" says what an id looks like.
    assert_status(
        admin
            .get_dataset(pb::GetDatasetRequest {
                id: "population".into(),
            })
            .await,
        Code::InvalidArgument,
        "must be owner/name, e.g. \"js.gongan/population\"",
    );
    assert_status(
        admin
            .register_dataset(pb::RegisterDatasetRequest {
                dataset: Some(dataset("js.ghost/data", pb::Classification::Open, "id")),
            })
            .await,
        Code::InvalidArgument,
        "owner js.ghost is not a registered department",
    );
    assert_status(
        admin
            .register_dataset(pb::RegisterDatasetRequest {
                dataset: Some(dataset("population", pb::Classification::Open, "id")),
            })
            .await,
        Code::InvalidArgument,
        "owner/name",
    );
}

async fn publish(client: &mut Client, schema: serde_json::Value) -> Result<pb::SchemaVersion, tonic::Status> {
    client
        .publish_schema(pb::PublishSchemaRequest {
            dataset_id: "js.gongan/population".into(),
            schema_json: schema.to_string(),
        })
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn invalid_schemas_are_refused_naming_the_pointer() {
    let ex = TestExchange::start().await;
    ex.seed().await;
    let mut owner = ex.client("js.gongan", Role::System).await;
    let mut bad_type = person_schema();
    bad_type["properties"]["age"]["type"] = json!("integr");
    assert_status(
        publish(&mut owner, bad_type).await,
        Code::InvalidArgument,
        "/properties/age/type",
    );
    let mut no_key = person_schema();
    no_key["properties"].as_object_mut().unwrap().remove("id");
    assert_status(
        publish(&mut owner, no_key).await,
        Code::InvalidArgument,
        "/properties/id",
    );
    let mut key_optional = person_schema();
    key_optional["required"] = json!(["name"]);
    assert_status(
        publish(&mut owner, key_optional).await,
        Code::InvalidArgument,
        "/required",
    );
    let mut unknown_format = person_schema();
    unknown_format["properties"]["id"]["format"] = json!("id-card");
    assert_status(
        publish(&mut owner, unknown_format).await,
        Code::InvalidArgument,
        "id-card",
    );
    let not_json = owner
        .publish_schema(pb::PublishSchemaRequest {
            dataset_id: "js.gongan/population".into(),
            schema_json: "{\"type\": ".into(),
        })
        .await;
    assert_status(not_json, Code::InvalidArgument, "not JSON");
    let latest = owner
        .get_schema(pb::GetSchemaRequest {
            dataset_id: "js.gongan/population".into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(latest.version, 1, "a refused schema must not create a version");
}

#[tokio::test]
async fn incompatible_versions_are_refused_naming_the_field_and_check_reports_broken_grants() {
    let ex = TestExchange::start().await;
    ex.seed().await;
    let mut consumer = ex.client("js.scjg", Role::System).await;
    let g = consumer
        .request_grant(grant_request("js.gongan/population", &["name", "phone"]))
        .await
        .unwrap()
        .into_inner();
    let mut owner = ex.client("js.gongan", Role::System).await;

    // The latest schema again, even laid out differently, is not a new version.
    assert_status(
        owner
            .publish_schema(pb::PublishSchemaRequest {
                dataset_id: "js.gongan/population".into(),
                schema_json: serde_json::to_string_pretty(&person_schema()).unwrap(),
            })
            .await,
        Code::AlreadyExists,
        "version 1 of js.gongan/population already has this schema",
    );

    // Dropping "phone" from a closed schema: records valid before (with a phone) would be refused.
    let mut without_phone = person_schema();
    without_phone["properties"].as_object_mut().unwrap().remove("phone");
    let check = owner
        .check_schema(pb::CheckSchemaRequest {
            dataset_id: "js.gongan/population".into(),
            schema_json: without_phone.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!check.accepted);
    assert_eq!(check.version, 2);
    assert!(
        check
            .incompatibilities
            .iter()
            .any(|i| i.message.contains("phone") && i.against_version == 1),
        "{check:?}"
    );
    assert_eq!(check.broken_grants.len(), 1, "{check:?}");
    assert_eq!(check.broken_grants[0].grant_id, g.id);
    assert_eq!(check.broken_grants[0].field, "phone");
    assert!(check.broken_grants[0].reason.contains("would be removed"));
    assert_status(
        publish(&mut owner, without_phone.clone()).await,
        Code::FailedPrecondition,
        "phone",
    );

    // Making an optional field required breaks BACKWARD too.
    let mut age_required = person_schema();
    age_required["required"] = json!(["id", "name", "age"]);
    assert_status(publish(&mut owner, age_required).await, Code::FailedPrecondition, "age");

    // A compatible change: widen age to integer-or-null. Accepted as version 2, check agrees first.
    let mut widened = person_schema();
    widened["properties"]["age"]["type"] = json!(["integer", "null"]);
    let check = owner
        .check_schema(pb::CheckSchemaRequest {
            dataset_id: "js.gongan/population".into(),
            schema_json: widened.to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(check.accepted, "{check:?}");
    assert!(check.broken_grants.is_empty(), "{check:?}");
    let v2 = publish(&mut owner, widened).await.unwrap();
    assert_eq!(v2.version, 2);

    // With compatibility NONE the owner may drop the field; check still names the broken grant.
    let mut none = dataset("js.gongan/population", pb::Classification::Conditional, "id");
    none.compatibility = pb::CompatibilityMode::None as i32;
    owner
        .update_dataset(pb::UpdateDatasetRequest { dataset: Some(none) })
        .await
        .unwrap();
    let mut v3 = without_phone;
    v3["properties"]["age"]["type"] = json!(["integer", "null"]);
    assert_eq!(publish(&mut owner, v3).await.unwrap().version, 3);
    let v1 = owner
        .get_schema(pb::GetSchemaRequest {
            dataset_id: "js.gongan/population".into(),
            version: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&v1.schema_json).unwrap(),
        person_schema()
    );
}
