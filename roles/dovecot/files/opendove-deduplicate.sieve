# Managed by opendove.mailserver (role dovecot).
# smtpd delivers a message again when it was killed after Dovecot stored it but before it recorded the
# delivery: a message this user already received (same Message-ID, within sieve_duplicate_default_period) is
# dropped. Messages without a Message-ID are always delivered.
require "duplicate";
if duplicate {
  discard;
  stop;
}
