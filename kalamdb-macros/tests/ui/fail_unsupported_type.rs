use kalamdb_model::system_table;
use std::collections::HashMap;

#[system_table(name = "things")]
#[derive(serde::Serialize, serde::Deserialize, Clone)]
pub struct Thing {
    #[column(key)]
    pub id: String,
    pub tags: HashMap<String, String>,
}

fn main() {}
