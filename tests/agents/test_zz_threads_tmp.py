import threading, time
import paramiko
def test_threads():
    time.sleep(2)
    alive = [t for t in threading.enumerate() if isinstance(t, paramiko.Transport)]
    print("TRANSPORTS ALIVE", alive, len(threading.enumerate()))
