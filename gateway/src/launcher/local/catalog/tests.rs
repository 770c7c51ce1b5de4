use super::*;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn a_tenant_naming_its_own_catalog_keeps_it() {
    assert!(!own_catalog(&map(&[]), &map(&[])));
    assert!(!own_catalog(
        &map(&[("hive.metastore.uris", " ")]),
        &map(&[("spark.sql.warehouse.dir", "s3a://lake/w")])
    ));
    assert!(own_catalog(
        &map(&[("hive.metastore.uris", "thrift://metastore:9083")]),
        &map(&[])
    ));
    assert!(own_catalog(
        &map(&[]),
        &map(&[(
            "spark.hadoop.hive.metastore.uris",
            "thrift://metastore:9083"
        )])
    ));
    assert!(own_catalog(
        &map(&[(
            "javax.jdo.option.ConnectionURL",
            "jdbc:postgresql://db/metastore"
        )]),
        &map(&[])
    ));
    assert!(own_catalog(
        &map(&[]),
        &map(&[(
            "spark.hadoop.hive.metastore.client.factory.class",
            "com.amazonaws.glue.catalog.metastore.AWSGlueDataCatalogHiveClientFactory"
        )])
    ));
}

#[test]
fn tables_of_earlier_per_driver_catalogs_are_found() {
    let work = std::env::temp_dir().join(format!("sparkgate-catalog-{}", rand::random::<u32>()));
    let old = work.join("drivers/t-1-x");
    std::fs::create_dir_all(old.join("warehouse/sales")).unwrap();
    std::fs::create_dir_all(old.join("warehouse/reports.db")).unwrap();
    std::fs::write(old.join("warehouse/not-a-table.txt"), b"x").unwrap();
    let catalog_only = work.join("drivers/t-2-y");
    std::fs::create_dir_all(catalog_only.join("metastore_db")).unwrap();
    // A driver of today: temp files and logs only.
    std::fs::create_dir_all(work.join("drivers/t-3-z/tmp")).unwrap();
    let found = per_driver_tables(&work.join("drivers"));
    assert_eq!(
        found,
        vec![
            (
                old.clone(),
                vec!["reports.db".to_owned(), "sales".to_owned()]
            ),
            (catalog_only, vec![]),
        ]
    );
    report_per_driver_tables(&work.join("drivers"));
    assert!(
        old.join("warehouse/sales").is_dir(),
        "reporting moves nothing"
    );
    std::fs::remove_dir_all(&work).unwrap();
}
