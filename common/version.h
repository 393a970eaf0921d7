/*
 * version.h - the release every program reports with --version (and the
 * Debian package's upstream version).  Included by each program's main;
 * no code.
 */
#ifndef COMMON_VERSION_H
#define COMMON_VERSION_H

#define PROJECT_VERSION "0.2.0"

#endif
