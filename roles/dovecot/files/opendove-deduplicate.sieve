# Managed by opendove.mailserver (role dovecot).
# smtpd delivers a message again when it was killed after Dovecot stored it but before it recorded the
# delivery: a second delivery of the same queued message (within sieve_duplicate_default_period) is dropped.
# The key is the id smtpd gave the message in its queue, from the Received line it wrote (the topmost of its
# kind): unlike a Message-ID, which any sender can reuse to have someone else's message dropped, no sender
# can make two messages share it.
require ["duplicate", "variables"];
if header :matches "Received" "* (OpenSMTPD) with * id *" {
  if duplicate :uniqueid "${3}" {
    discard;
    stop;
  }
}
