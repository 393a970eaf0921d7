/*
 * notify.h - tell systemd we are ready (sd_notify protocol, hand-rolled:
 * systemd documents it as stable; no libsystemd needed).
 */
#ifndef COMMON_NOTIFY_H
#define COMMON_NOTIFY_H

/* Sends state (e.g. "READY=1") to $NOTIFY_SOCKET if set.  Returns 0 if
 * sent or not under systemd, -1 on error. */
int notify_systemd(const char *state);

#endif
