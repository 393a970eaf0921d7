# authd/: the authentication daemon and authctl.
