//! Policy: which processes may open, read, map or write which weight sets,
//! and what happens otherwise (allow, alert, kill, deny). Not built yet:
//! parsing, compiled tables and their kernel maps will live here, in
//! separate files, as Tetragon keeps policy parsing, state and maps apart.
