-- 002_ledger_totals: /metrics sums charged and refunded tokens
-- (store_ledger_totals); a covering index keeps that off the table rows.
CREATE INDEX token_transactions_kind ON token_transactions (kind, amount);
