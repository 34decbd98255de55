/*
 * stream_int.h
 *	  What the subscribers' side (stream.c) and the feed thread
 *	  (stream_feed.c) share: one live event, and the calls the feed makes.
 */
#ifndef VN_HTTP_STREAM_INT_H
#define VN_HTTP_STREAM_INT_H

#include <stddef.h>

/* one event of the feed; strings NUL-terminated, body not necessarily */
typedef struct VnStreamEvent
{
	long long	seq;
	const char *type;
	const char *tenant;
	const char *aggregate_type;
	const char *aggregate_id;
	const char *body; /* the CloudEvents envelope */
	size_t		body_len;
} VnStreamEvent;

typedef enum VnFeedState
{
	VN_FEED_OFF,		  /* no broker configured */
	VN_FEED_DISCONNECTED, /* configured, not consuming (yet, or any more) */
	VN_FEED_CONNECTED
} VnFeedState;

/* in stream_feed.c */
extern bool		   vn_stream_feed_start(const char *url, char **error);
extern VnFeedState vn_stream_feed_state(void);

/* in stream.c, called by the feed thread only */
extern void vn_stream_dispatch(const VnStreamEvent *ev);
/* heartbeats due at now_ms, and frees the subscriptions whose connection ended */
extern void vn_stream_tick(long long now_ms);
/* marks the calling thread as the feed thread */
extern void vn_stream_feed_thread(void);
/* every subscriber is cut (the feed lost events: they must resume) */
extern void vn_stream_cut_all(const char *reason, const char *message);

#endif
