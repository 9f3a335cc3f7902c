import type Database from 'better-sqlite3';

/** Distinct list and findByState shapes are few; the cap only guards against a flood of odd tag combinations. */
const MAX_CACHED_STATEMENTS = 256;

/** Prepared statements of one connection, by their SQL. */
export class StatementCache {
  private readonly statements = new Map<string, Database.Statement>();

  constructor(private readonly db: Database.Database) {}

  get(sql: string): Database.Statement {
    let stmt = this.statements.get(sql);
    if (!stmt) {
      if (this.statements.size >= MAX_CACHED_STATEMENTS) this.statements.clear();
      stmt = this.db.prepare(sql);
      this.statements.set(sql, stmt);
    }
    return stmt;
  }

  clear(): void {
    this.statements.clear();
  }
}
