/*
 * log.h
 *	  The access log of ventros-http: lines buffered in memory and written to
 *	  stderr by a thread of their own.
 */
#ifndef VN_HTTP_LOG_H
#define VN_HTTP_LOG_H

/* starts the writer thread (lines logged before go out at the first flush) */
extern void vn_log_start(void);
/* appends one line (a newline is added); never blocks on the file */
extern void vn_log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* writes out whatever is buffered; at exit */
extern void vn_log_flush(void);

#endif
