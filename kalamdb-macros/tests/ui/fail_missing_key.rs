use kalamdb_model::system_table;

#[system_table(name = "things")]
#[derive(serde::Serialize, serde::Deserialize, Clone)]
pub struct Thing {
    pub id: String,
}

fn main() {}
