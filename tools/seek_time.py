#!/usr/bin/python3
"""Time accurate seeks in a coded file, as a player does them: open it through decodebin, preroll, then for
each target a flushing accurate seek, timed until the picture at the target prerolls.

  GST_PLUGIN_PATH=build/gst /usr/bin/python3 tools/seek_time.py FILE.e2el 9.5 3.2 7.7
"""
import sys
import time

import gi

gi.require_version('Gst', '1.0')
from gi.repository import Gst  # noqa: E402


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    Gst.init(None)
    path, targets = sys.argv[1], [float(t) for t in sys.argv[2:]]
    t0 = time.time()
    pipe = Gst.parse_launch('filesrc name=src ! decodebin ! videoconvert ! appsink name=sink sync=false')
    pipe.get_by_name('src').set_property('location', path)
    sink = pipe.get_by_name('sink')
    pipe.set_state(Gst.State.PAUSED)
    if pipe.get_state(Gst.CLOCK_TIME_NONE)[0] != Gst.StateChangeReturn.SUCCESS:
        sys.exit(f'{path}: does not preroll')
    print(f'open and preroll: {time.time() - t0:.3f} s')
    ok, duration = pipe.query_duration(Gst.Format.TIME)
    print(f'duration: {duration / Gst.SECOND:.3f} s' if ok else 'duration: unknown')
    for target in targets:
        t1 = time.time()
        pipe.seek_simple(Gst.Format.TIME, Gst.SeekFlags.FLUSH | Gst.SeekFlags.ACCURATE, int(target * Gst.SECOND))
        pipe.get_state(Gst.CLOCK_TIME_NONE)
        pts = sink.emit('pull-preroll').get_buffer().pts / Gst.SECOND
        print(f'seek to {target:.2f} s: picture at {pts:.2f} s after {time.time() - t1:.3f} s')
    pipe.set_state(Gst.State.NULL)


if __name__ == '__main__':
    main()
