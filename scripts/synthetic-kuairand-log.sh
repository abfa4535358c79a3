#!/usr/bin/env bash
# A synthetic impression log in KuaiRand's layout (log_*.csv, the same 19 columns), for
# measuring `recpipe import kuairand` on logs larger than memory:
#   scripts/synthetic-kuairand-log.sh ROWS OUT_DIR [USERS] [ITEMS]
# writes OUT_DIR/log_synthetic.csv with ROWS impressions of USERS users (default 27285, as
# KuaiRand-27K) over ITEMS videos (default 1000000) on 14 days from 2022-04-08, in time
# order per user block (not globally sorted). Deterministic (awk's srand(7)).
set -euo pipefail
rows=${1:?rows}
out=${2:?out dir}
users=${3:-27285}
items=${4:-1000000}
mkdir -p "$out"
awk -v rows="$rows" -v users="$users" -v items="$items" 'BEGIN {
  srand(7);
  print "user_id,video_id,date,hourmin,time_ms,is_click,is_like,is_follow,is_comment,is_forward,is_hate,long_view,play_time_ms,duration_ms,profile_stay_time,comment_stay_time,is_profile_enter,is_rand,tab";
  start = 1649376000000; span = 14 * 86400000;
  for (i = 0; i < rows; i++) {
    u = int(rand() * users);
    v = int(items * rand() ^ 3);
    t = start + int(rand() * span);
    day = 20220408 + int((t - start) / 86400000);
    hm = int(((t % 86400000) / 3600000)) * 100;
    click = rand() < 0.4 ? 1 : 0;
    dur = 5000 + (v * 7919) % 120000;
    play = click ? int(rand() * dur) : int(rand() * 3000);
    printf "%d,%d,%d,%d,%.0f,%d,%d,0,0,0,0,%d,%d,%d,0,0,0,0,%d\n", u, v, day, hm, t, click, (click && rand() < 0.05), (play > dur / 2), play, dur, (rand() < 0.1);
  }
}' > "$out/log_synthetic.csv"
