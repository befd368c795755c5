//! The local audit store: every record kept in an embedded SQLite database
//! for responders' queries, with a tamper-evident chain. Not built yet;
//! this is its home (schema, writer, queries, verification, one file each).
