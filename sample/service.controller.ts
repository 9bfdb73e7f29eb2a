import { Controller, Get, Inject, Res, Sse, type MessageEvent } from '@nestjs/common';
import { HealthCheck, HealthCheckService, TypeOrmHealthIndicator } from '@nestjs/terminus';
import { map, type Observable } from 'rxjs';
import { CachingDefinitionLookup } from '../src';
import { ModuleCacheHealthIndicator } from '../src/health';
import { clusterMetrics } from './cluster-metrics';
import { ENDPOINTS, exampleCommands } from './examples';
import { RealmsService } from './realms.service';
import type { ServiceConfig } from './service-config';
import { SERVICE_CONFIG } from './service.tokens';

/** The slice of Express's response the metrics endpoint uses. */
interface HeaderResponse {
  setHeader(name: string, value: string): void;
}

/** Everything that is about the service rather than the cache's data: index, health, metrics, events. */
@Controller()
export class ServiceController {
  constructor(
    private readonly lookup: CachingDefinitionLookup,
    private readonly health: HealthCheckService,
    private readonly database: TypeOrmHealthIndicator,
    private readonly cache: ModuleCacheHealthIndicator,
    private readonly realms: RealmsService,
    @Inject(SERVICE_CONFIG) private readonly config: ServiceConfig,
  ) {}

  @Get()
  index(): object {
    return {
      service: 'module-cache',
      realms: { url: this.config.realmsURL, folder: this.config.realmsDir, mounted: this.realms.list() },
      endpoints: ENDPOINTS,
      try: exampleCommands(this.config),
    };
  }

  /**
   * 200 when this worker's database pool answers and its cache is healthy (listener LISTENing,
   * self-probe passed, NOTIFY queue not filling up); 503 with the reasons otherwise.
   */
  @Get('health')
  @HealthCheck()
  check() {
    return this.health.check([() => this.database.pingCheck('database').withTimeout(1_500), () => this.cache.isHealthy('module-cache')]);
  }

  /** Prometheus text of every worker, summed (see cluster-metrics.ts). */
  @Get('metrics')
  async metrics(@Res({ passthrough: true }) res: HeaderResponse): Promise<string> {
    const { contentType, text } = await clusterMetrics();
    res.setHeader('content-type', contentType);
    return text;
  }

  /** Every cache event of this worker (remote invalidations included), as server-sent events. */
  @Sse('events')
  events(): Observable<MessageEvent> {
    return this.lookup.events$.pipe(map((event) => ({ data: event })));
  }
}
