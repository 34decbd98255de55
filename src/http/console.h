/*
 * console.h
 *	  GET /console: the agent console, static files built into the front.
 */
#ifndef VN_HTTP_CONSOLE_H
#define VN_HTTP_CONSOLE_H

#include "router.h"

/* answers GET or HEAD of /console and /console/<file>; 404 or 405 otherwise */
extern void vn_console_serve(const VnRequest *req, VnResponse *resp);

#endif
