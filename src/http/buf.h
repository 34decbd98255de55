/*
 * buf.h
 *	  Growable strings for ventros-http: SQL text, JSON and CSV answers.
 *
 * Every append checks for allocation failure by aborting: the process has
 * nothing sensible to do without memory, and a half-built SQL statement must
 * never be sent.
 */
#ifndef VN_HTTP_BUF_H
#define VN_HTTP_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct VnBuf
{
	char  *data;
	size_t len;
	size_t cap;
} VnBuf;

extern void vn_buf_init(VnBuf *b);
extern void vn_buf_free(VnBuf *b);
extern void vn_buf_reset(VnBuf *b);
extern void vn_buf_add(VnBuf *b, const char *s);
extern void vn_buf_addn(VnBuf *b, const char *s, size_t n);
extern void vn_buf_addc(VnBuf *b, char c);
extern void vn_buf_addf(VnBuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "identifier" with doubled quotes */
extern void vn_buf_ident(VnBuf *b, const char *ident);
/* 'literal' with doubled quotes (standard_conforming_strings) */
extern void vn_buf_literal(VnBuf *b, const char *s);
/* "json string" with escapes */
extern void	 vn_buf_json_string(VnBuf *b, const char *s);
extern char *vn_strdup(const char *s);
extern char *vn_strndup(const char *s, size_t n);
extern void *vn_alloc(size_t n);
extern bool	 vn_utf8_valid(const char *s, size_t len);
/* %-decoding (and + as space when plus); malloc'd, NULL when malformed or not UTF-8 */
extern char *vn_url_decode(const char *s, size_t n, bool plus);
/* FNV-1a, 64 bits: the front's one hash (caches, tables); not for secrets */
extern unsigned long long vn_hash_bytes(const void *p, size_t len);
extern unsigned long long vn_hash_string(const char *s);

#endif
