"""PostgreSQL: append to the access log in one round trip

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

An append was five statements while the log's advisory lock was held (read the head, savepoint, insert,
release, then the commit), each a round trip through a Python thread that had to win its process's GIL back
before the next one; every other writer in every worker waited out all of them. ``citycode_access_log_append``
does the same in one call: it takes the transaction-scoped advisory lock, reads the head (a VOLATILE function
takes a fresh snapshot for each query it runs, so it sees the entry the previous holder committed), and inserts
the entry chained to it, its hash SHA-256 over the previous hash and the entry's canonical JSON. The caller sends
that JSON in two parts, the bytes before and after the ``seq`` value (keys are sorted, so ``seq`` sits between
``purpose`` and ``subject``), and the function puts the decimal ``seq`` between them: the hash is byte for byte
what ``codeservice.accesslog.service.entry_hash`` computes, and what ``citycode audit verify`` recomputes.
SQLite keeps the statement-by-statement append (its writers are serialised by the database itself).
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FUNCTION = """
CREATE OR REPLACE FUNCTION citycode_access_log_append(
    lock_key bigint, p_at varchar, p_actor varchar, p_actor_label varchar, p_office varchar, p_subject varchar,
    p_action varchar, p_what json, p_purpose varchar, p_outcome varchar, body_head bytea, body_tail bytea)
RETURNS TABLE (appended_seq integer, appended_hash varchar)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    head_seq integer;
    head_hash varchar;
    new_hash varchar;
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT a.seq, a.hash INTO head_seq, head_hash FROM access_log a ORDER BY a.seq DESC LIMIT 1;
    IF head_seq IS NULL THEN
        head_seq := 0;
        head_hash := repeat('0', 64);
    END IF;
    new_hash := encode(sha256(decode(head_hash, 'hex') || body_head
                              || convert_to((head_seq + 1)::text, 'UTF8') || body_tail), 'hex');
    INSERT INTO access_log (seq, at, actor, actor_label, office, subject, action, what, purpose, outcome,
                            prev_hash, hash)
    VALUES (head_seq + 1, p_at, p_actor, p_actor_label, p_office, p_subject, p_action, p_what, p_purpose,
            p_outcome, head_hash, new_hash);
    RETURN QUERY SELECT head_seq + 1, new_hash;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS citycode_access_log_append(bigint, varchar, varchar, varchar, varchar, "
                   "varchar, varchar, json, varchar, varchar, bytea, bytea)")
