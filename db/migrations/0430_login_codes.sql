-- One-time login codes (AccountService.IssueLoginCode): how a device-less pre-opened account gets
-- its first token. Only the SHA-256 of a code is stored, so reading this table gives no code; a
-- user holds at most one code (a new one replaces it), so the table stays one row per user.
CREATE TABLE IF NOT EXISTS login_codes (
  user_id VARCHAR(128) NOT NULL PRIMARY KEY,
  code_sha256 BINARY(32) NOT NULL,
  expires_at TIMESTAMP(3) NOT NULL,
  -- Set by the one IssueToken that used the code; a used code is never accepted again.
  used_at TIMESTAMP(3) NULL,
  issued_by VARCHAR(128) NOT NULL,
  issued_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB
