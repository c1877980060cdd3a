"""A real SMTP server for tests/web_mail.rs: Debian's aiosmtpd with TLS
and a login, delivering into a Maildir.

    smtp_server.py MODE PORT CERT KEY MAILDIR USER PASSWORD

MODE is "starttls" (plain SMTP that requires STARTTLS before AUTH and
mail) or "smtps" (TLS from the first byte). Runs until killed.
"""

import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

mode, port, cert, key, maildir, user, password = sys.argv[1:8]


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == user
        and auth_data.password.decode() == password
    )
    # handled=False: aiosmtpd answers 535 itself.
    return AuthResult(success=ok, handled=False)


context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
common = dict(
    hostname="127.0.0.1",
    port=int(port),
    authenticator=authenticate,
    auth_required=True,
)
if mode == "smtps":
    # The socket is TLS from the first byte; aiosmtpd does not count that
    # as TLS for AUTH, so it is allowed here outright.
    controller = Controller(
        Mailbox(maildir), ssl_context=context, auth_require_tls=False, **common
    )
elif mode == "starttls":
    controller = Controller(
        Mailbox(maildir),
        tls_context=context,
        require_starttls=True,
        auth_require_tls=True,
        **common,
    )
else:
    sys.exit(f"unknown mode {mode!r}")
controller.start()
print("ready", flush=True)
while True:
    time.sleep(3600)
