//! The parts of Cinder's schema keymigrate reads or writes. Only the columns used are declared
//! (Cinder's `volumes` has about 40); every column that Cinder allows to be NULL is nullable here.

diesel::table! {
    volumes (id) {
        id -> Varchar,
        deleted -> Nullable<Bool>,
        host -> Nullable<Varchar>,
        cluster_name -> Nullable<Varchar>,
        user_id -> Nullable<Varchar>,
        project_id -> Nullable<Varchar>,
        encryption_key_id -> Nullable<Varchar>,
        updated_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    snapshots (id) {
        id -> Varchar,
        deleted -> Nullable<Bool>,
        volume_id -> Nullable<Varchar>,
        user_id -> Nullable<Varchar>,
        project_id -> Nullable<Varchar>,
        encryption_key_id -> Nullable<Varchar>,
        updated_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    backups (id) {
        id -> Varchar,
        deleted -> Nullable<Bool>,
        host -> Nullable<Varchar>,
        user_id -> Nullable<Varchar>,
        project_id -> Nullable<Varchar>,
        encryption_key_id -> Nullable<Varchar>,
        updated_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    volume_glance_metadata (id) {
        id -> Integer,
        deleted -> Nullable<Bool>,
        volume_id -> Nullable<Varchar>,
        snapshot_id -> Nullable<Varchar>,
        key -> Nullable<Varchar>,
        value -> Nullable<Text>,
        updated_at -> Nullable<Timestamp>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(volumes, snapshots, backups, volume_glance_metadata);
