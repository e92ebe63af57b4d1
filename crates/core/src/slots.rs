//! Patroni's names for replication slots.

/// The replication slot Patroni keeps for the member `name` (Patroni's
/// `slot_name_from_member_name`, the same on every line from 2.1 to 4.1): lower-cased; `-`
/// and `.` become `_`; any other character outside `[a-z0-9_]` becomes `u` and its Unicode
/// code point in at least four decimal digits; cut to 63 characters. Different members can
/// map to one slot.
pub fn slot_name_from_member_name(name: &str) -> String {
    let mut slot = String::with_capacity(name.len());
    for c in name.to_lowercase().chars() {
        match c {
            'a'..='z' | '0'..='9' | '_' => slot.push(c),
            '-' | '.' => slot.push('_'),
            other => slot.push_str(&format!("u{:04}", u32::from(other))),
        }
    }
    // Only ASCII is left, so bytes are characters.
    slot.truncate(63);
    slot
}

#[cfg(test)]
mod tests {
    use super::slot_name_from_member_name as slot;

    #[test]
    fn member_names_map_to_patronis_slot_names() {
        assert_eq!(slot("pg0"), "pg0");
        assert_eq!(slot("db1.example.com"), "db1_example_com");
        assert_eq!(slot("DB-2"), "db_2");
        assert_eq!(
            slot("patroni-01-db-dr.c.gitlab-dr.internal"),
            "patroni_01_db_dr_c_gitlab_dr_internal"
        );
        // Other characters by their code point, four digits at least.
        assert_eq!(slot("a b"), "au0032b");
        assert_eq!(slot("node@1"), "nodeu00641");
        assert_eq!(slot("Ünïcode"), "u0252nu0239code");
        assert_eq!(slot("x\u{1F600}"), "xu128512");
    }

    #[test]
    fn slot_names_are_cut_to_63_characters() {
        let long = "a".repeat(70);
        assert_eq!(slot(&long).len(), 63);
        // Cut after the encoding, as Patroni does: a code point can be split.
        let s = slot(&format!("{}é", "b".repeat(60)));
        assert_eq!(s, format!("{}u02", "b".repeat(60)));
    }
}
