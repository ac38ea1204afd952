/**
 * PolicySynth's own data layer, as the baseline: the seed's `PsModelUsage` Sequelize model
 * (`underscored: true`, timestamps, table `ps_model_usage`), plus the two cache-write counters
 * current PolicySynth has, and a minimal `PsAgent` for the sub-agent walk.
 */
import { DataTypes, Model, Sequelize, type ModelStatic } from "sequelize";

export interface SequelizeModels {
  readonly sequelize: Sequelize;
  readonly PsModelUsage: ModelStatic<Model>;
  readonly PsAgent: ModelStatic<Model>;
}

const counter = () => ({ type: DataTypes.INTEGER, allowNull: false, defaultValue: 0 });

/** Connects Sequelize to `url` and defines the models the way PolicySynth's dbModels do. */
export function defineSequelizeModels(url: string): SequelizeModels {
  const sequelize = new Sequelize(url, {
    dialect: "postgres",
    logging: false,
    pool: { max: 4 },
  });
  class PsModelUsage extends Model {}
  PsModelUsage.init(
    {
      id: { type: DataTypes.INTEGER, autoIncrement: true, primaryKey: true },
      user_id: { type: DataTypes.INTEGER, allowNull: false },
      created_at: { type: DataTypes.DATE, allowNull: false, defaultValue: DataTypes.NOW },
      updated_at: { type: DataTypes.DATE, allowNull: false, defaultValue: DataTypes.NOW },
      model_id: { type: DataTypes.INTEGER, allowNull: false },
      token_in_count: counter(),
      token_in_cached_context_count: counter(),
      token_in_cache_write_count: counter(),
      long_context_token_in_count: counter(),
      long_context_token_in_cached_context_count: counter(),
      long_context_token_in_cache_write_count: counter(),
      token_out_count: counter(),
      token_out_reasoning_count: counter(),
      token_out_audio_count: counter(),
      token_out_image_count: counter(),
      long_context_token_out_count: counter(),
      long_context_token_out_reasoning_count: counter(),
      long_context_token_out_audio_count: counter(),
      long_context_token_out_image_count: counter(),
      agent_id: { type: DataTypes.INTEGER, allowNull: true },
      connector_id: { type: DataTypes.INTEGER, allowNull: true },
    },
    {
      sequelize,
      tableName: "ps_model_usage",
      indexes: [{ fields: ["user_id"] }, { fields: ["model_id"] }, { fields: ["agent_id"] }, { fields: ["connector_id"] }],
      timestamps: true,
      underscored: true,
    },
  );
  class PsAgent extends Model {}
  PsAgent.init(
    {
      id: { type: DataTypes.INTEGER, autoIncrement: true, primaryKey: true },
      user_id: { type: DataTypes.INTEGER, allowNull: false },
      class_id: { type: DataTypes.INTEGER, allowNull: false },
      group_id: { type: DataTypes.INTEGER, allowNull: false },
      configuration: { type: DataTypes.JSONB, allowNull: false },
      parent_agent_id: { type: DataTypes.INTEGER, allowNull: true },
    },
    { sequelize, tableName: "ps_agents", timestamps: true, underscored: true },
  );
  return { sequelize, PsModelUsage, PsAgent };
}
