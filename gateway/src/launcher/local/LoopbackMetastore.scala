// A tenant's catalog for local drivers: Hive's metastore service (the one Spark ships, Hive 2.3),
// served on one loopback address. Hive 2.3's own `HiveMetaStore` main binds every interface and
// has no authentication, so sparkgate starts this instead. sparkgate compiles it once with the
// Scala compiler in Spark's own jars (see catalog.rs); settings come as Java system properties,
// which HiveConf reads.
//
// Every process on the machine can reach a loopback port, and the metastore protocol has no
// login: a connection is taken only from a process of this server's own OS user, which is its
// tenant's (sparkgate runs each tenant's drivers and catalog as an OS user of the tenant's own).
// The kernel's socket tables (/proc/net/tcp, tcp6) say who owns the other end.
package sparkgate

import java.net.InetSocketAddress

import org.apache.hadoop.hive.conf.HiveConf
import org.apache.hadoop.hive.metastore.{HiveMetaStore, TSetIpAddressProcessor}
import org.apache.hadoop.hive.metastore.HiveMetaStore.HMSHandler
import org.apache.thrift.protocol.{TBinaryProtocol, TProtocol}
import org.apache.thrift.server.{ServerContext, TServerEventHandler, TThreadPoolServer}
import org.apache.thrift.transport.{TServerSocket, TSocket, TTransport, TTransportFactory}

/** A loopback server socket that accepts connections from its own OS user's processes only. */
class OwnUserServerSocket(address: InetSocketAddress) extends TServerSocket(address) {
  private val ownUid: String = {
    val status = scala.io.Source.fromFile("/proc/self/status")
    try status.getLines().find(_.startsWith("Uid:")).map(_.trim.split("\\s+")(1)).getOrElse("?")
    finally status.close()
  }
  private val serverPort = address.getPort

  override def accept(): TSocket = {
    var taken: TSocket = null
    while (taken == null) {
      val socket = super.accept()
      val peerPort = socket.getSocket.getPort
      peerUid(peerPort) match {
        case Some(uid) if uid == ownUid => taken = socket
        case other =>
          System.err.println(s"sparkgate catalog: refused a connection from port $peerPort of OS user " +
            s"${other.getOrElse("unknown")}: it serves its own tenant's drivers only")
          socket.close()
      }
    }
    taken
  }

  // The owner of the socket whose local port is the peer's and whose remote port is ours.
  private def peerUid(peerPort: Int): Option[String] = {
    val peer = f":$peerPort%04X"
    val ours = f":$serverPort%04X"
    Seq("/proc/net/tcp", "/proc/net/tcp6").iterator.flatMap { table =>
      val source = scala.io.Source.fromFile(table)
      try {
        source.getLines().drop(1).map(_.trim.split("\\s+"))
          .filter(f => f.length > 7 && f(1).endsWith(peer) && f(2).endsWith(ours))
          .map(f => f(7)).toList
      } finally source.close()
    }.nextOption()
  }
}

object LoopbackMetastore {
  def main(args: Array[String]): Unit = {
    if (args.length != 2) {
      System.err.println("usage: sparkgate.LoopbackMetastore HOST PORT")
      System.exit(2)
    }
    val conf = new HiveConf(classOf[HMSHandler])
    // Opens (or creates) the catalog database before the port is bound: a client that
    // connects finds it ready.
    val handler = HiveMetaStore.newRetryingHMSHandler("sparkgate catalog", conf, false)
    val socket = new OwnUserServerSocket(new InetSocketAddress(args(0), args(1).toInt))
    val server = new TThreadPoolServer(
      new TThreadPoolServer.Args(socket)
        .processor(new TSetIpAddressProcessor(handler))
        .transportFactory(new TTransportFactory())
        .protocolFactory(new TBinaryProtocol.Factory())
        .minWorkerThreads(conf.getIntVar(HiveConf.ConfVars.METASTORESERVERMINTHREADS))
        .maxWorkerThreads(conf.getIntVar(HiveConf.ConfVars.METASTORESERVERMAXTHREADS)))
    // Each connection's thread holds its own store (a database connection): free it when the
    // connection ends, as Hive's own server does.
    server.setServerEventHandler(new TServerEventHandler {
      override def preServe(): Unit = ()
      override def createContext(in: TProtocol, out: TProtocol): ServerContext = null
      override def deleteContext(ctx: ServerContext, in: TProtocol, out: TProtocol): Unit =
        HMSHandler.removeRawStore()
      override def processContext(ctx: ServerContext, in: TTransport, out: TTransport): Unit = ()
    })
    System.out.println(s"sparkgate catalog serving on ${args(0)}:${args(1)}")
    System.out.flush()
    server.serve()
  }
}
